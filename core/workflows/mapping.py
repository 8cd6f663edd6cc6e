"""Algorithm 1 on a project (one semantics for the CLI, the app and the sample project) and the
effective per-sample prediction: a manual override beats the Algorithm-1 vector, and every
prediction carries its support (how many development samples back it).

Semantics: the label columns are the labels the clustering's samples carry (label-set order),
plus a final ``other`` column (a development sample with none of them) unless the label set
has its own ``other``; the development set is the project's dev set (or a seeded fraction of
the labelled training samples); clusters without a development sample are unmatched and
predict nothing. A label is predicted when its value in the cluster's vector is >= 0.5; the
single best label is the vector's argmax (ties: label-set order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 0.5


@dataclass
class Algorithm1Result:
    clustering: str
    match: object                      # core.cluster.match.ClusterMatch
    columns: list[str]                 # label names (+ "other")
    label_names: list[str]
    other: bool
    dev_description: str
    ids: np.ndarray
    assign: np.ndarray
    dev: np.ndarray                    # mask over ids
    y: np.ndarray                      # N x C labels of ids

    @property
    def vectors(self) -> dict[int, dict[str, float]]:
        from ..cluster.match import match_to_vectors

        return match_to_vectors(self.match, self.label_names, other=self.other)[0]

    @property
    def counts(self) -> dict[int, int]:
        return {int(k): int(c) for k, c in enumerate(self.match.counts)}

    @property
    def unmatched(self) -> list[int]:
        return [int(k) for k in self.match.unmatched]


def parse_dev_from(text: str):
    """'dev' -> ('dev', None); 'labels-fraction=0.1' -> ('fraction', 0.1)."""
    if text == "dev":
        return "dev", None
    key, sep, value = text.partition("=")
    if key in ("labels-fraction", "labels_fraction", "fraction") and sep:
        try:
            f = float(value)
        except ValueError:
            raise ValueError(f"--dev-from {text!r}: {value!r} is not a number") from None
        if not 0 < f <= 1:
            raise ValueError(f"--dev-from {text!r}: the fraction must be in (0, 1]")
        return "fraction", f
    raise ValueError(f"--dev-from expects 'dev' or 'labels-fraction=F', got {text!r}")


def choose_dev(project, ids: np.ndarray, y: np.ndarray, split: np.ndarray, dev_from: str = "dev",
               seed: int = 0):
    """Boolean mask over ``ids`` of the development samples, and a description."""
    mode, frac = parse_dev_from(dev_from)
    if mode == "dev":
        dev = np.isin(ids, np.asarray(project.dev_ids(), dtype=str))
        if not dev.any():
            raise ValueError("the development set is empty among this clustering's samples: mark "
                             "labelled samples as development set, or use --dev-from labels-fraction=0.1")
        return dev, f"project dev set ({int(dev.sum())} samples)"
    labelled = y.sum(1) > 0
    pool = labelled & (split == "train")
    where = "labelled training samples"
    if not pool.any():
        pool, where = labelled, "labelled samples"
    if not pool.any():
        raise ValueError("no labelled sample to draw a development set from")
    cand = np.flatnonzero(pool)
    n = max(1, int(round(frac * len(cand))))
    pick = np.random.default_rng(seed).choice(cand, n, replace=False)
    dev = np.zeros(len(ids), dtype=bool)
    dev[pick] = True
    return dev, f"{frac:g} of the {len(cand)} {where} ({n} samples, seed {seed})"


def algorithm1(project, clustering: str, *, dev_from: str = "dev", seed: int = 0,
               save: bool = True) -> Algorithm1Result:
    """Algorithm 1 on a stored clustering: each cluster's mean development-set label vector
    (with ``other``), stored in the project (source ``algorithm1``; manual overrides are kept)."""
    from ..cluster.match import OTHER, match_clusters, save_match

    ids, assign = project.load_clustering(clustering)
    ids = np.asarray(ids).astype(str)
    if len(ids) == 0:
        raise ValueError(f"clustering {clustering!r} has no samples")
    names, y = project.labels_in_use(list(ids))
    if not names:
        raise ValueError(f"{project.path}: the samples of {clustering!r} have no labels; "
                         "label a development set first")
    y = y.astype(np.float64)
    split = project.samples(ids=list(ids))["split"].astype(str).to_numpy()
    dev, desc = choose_dev(project, ids, y, split, dev_from, seed)
    other = not any(n.lower() == OTHER for n in names)
    k = int(assign.max()) + 1
    match = match_clusters(assign[dev], y[dev], k, other=other)
    if save:
        save_match(project, clustering, match, names, other=other)
    cols = names + ([OTHER] if other else [])
    return Algorithm1Result(clustering, match, cols, names, other, desc, ids, assign, dev, y)


#: a vector backed by fewer development samples than this is flagged "low support"
MIN_SUPPORT = 2


@dataclass
class Prediction:
    """A cluster's (hence a sample's) predicted class.

    ``labels``: the labels whose value in the cluster's vector reaches 0.5, best first;
    ``score``: the best one's value (the share of the cluster's development samples carrying
    it); ``support``: the development samples behind the vector (0 for a manual override);
    ``source``: 'manual' | 'algorithm1' | '' (none); ``reason``: why there is no prediction.
    """

    labels: list = field(default_factory=list)
    score: float | None = None
    support: int = 0
    source: str = ""
    cluster: int | None = None
    vector: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def label(self) -> str:
        return self.labels[0] if self.labels else ""

    @property
    def low_support(self) -> bool:
        return self.source == "algorithm1" and self.support < MIN_SUPPORT

    @property
    def text(self) -> str:
        return ", ".join(self.labels)

    def top(self, n: int = 3) -> str:
        items = sorted(((k, v) for k, v in self.vector.items() if v is not None and v > 0),
                       key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{k} {v:.2f}" for k, v in items)

    def describe(self) -> str:
        """One line: 'spleen · score 0.62 · support 5 dev samples' or 'none: <reason>'."""
        if not self.labels:
            return f"none: {self.reason}" if self.reason else "none"
        if self.source == "manual":
            return f"{self.text} · set by hand for cluster {self.cluster}"
        flag = " · LOW SUPPORT" if self.low_support else ""
        return (f"{self.text} · score {self.score:.2f} · support {self.support} dev "
                f"sample{'s' if self.support != 1 else ''}{flag}")

    def as_dict(self) -> dict:
        return {"label": self.label, "labels": list(self.labels), "score": self.score,
                "support": self.support, "source": self.source, "cluster": self.cluster,
                "low_support": self.low_support, "reason": self.reason}


def cluster_predictions(project, clustering: str, *, threshold: float = THRESHOLD) -> dict[int, Prediction]:
    """Effective Prediction of every cluster of ``clustering`` (unmatched ones with their
    reason): the manual override when there is one, else the Algorithm-1 vector."""
    import json
    from types import SimpleNamespace

    # read in SQL, not through a DataFrame of every assignment: a cold `latentmap query` imports
    # no pandas, and a 100,000-sample clustering costs one DISTINCT
    clusters = sorted(int(k) for (k,) in project.query(
        "SELECT DISTINCT cluster FROM cluster_assignments WHERE clustering=?", (clustering,)))
    rows = {(int(c), src): SimpleNamespace(cluster=int(c), source=src, vector=json.loads(vec), n_dev=n_dev)
            for c, src, vec, n_dev in project.query(
                "SELECT cluster, source, vector, n_dev FROM cluster_labels WHERE clustering=?"
                " ORDER BY cluster, source", (clustering,))}
    alg1_run = any(src == "algorithm1" for _, src in rows)
    out: dict[int, Prediction] = {}
    for k in sorted(set(clusters) | {k for k, _ in rows}):
        row = rows.get((k, "manual")) or rows.get((k, "algorithm1"))
        if row is None:
            reason = (f"cluster {k} has no development-set sample (unmatched): label one of its members "
                      "and mark it as development set, then rerun Algorithm 1") if alg1_run else \
                "Algorithm 1 has not been run on this clustering yet"
            out[k] = Prediction(cluster=k, reason=reason)
            continue
        v = {str(a): (None if b is None else float(b)) for a, b in (row.vector or {}).items()}
        names = sorted((a for a, b in v.items() if b is not None and not np.isnan(b) and b >= threshold),
                       key=lambda a: -v[a])
        p = Prediction(labels=names, score=v[names[0]] if names else None,
                       support=int(row.n_dev or 0) if row.source == "algorithm1" else 0,
                       source=row.source, cluster=k, vector=v)
        if not names:
            p.reason = (f"no label reaches {threshold:.2f} in cluster {k}'s vector "
                        f"({p.top() or 'all zero'}; {p.support} dev samples)")
        out[k] = p
    return out


def sample_predictions(project, clustering: str, ids=None,
                       per_cluster: dict[int, Prediction] | None = None) -> dict[str, Prediction]:
    """sample id -> Prediction of its cluster (a sample outside the clustering is absent; one
    in an unmapped cluster gets an empty Prediction)."""
    per_cluster = per_cluster if per_cluster is not None else cluster_predictions(project, clustering)
    assigned = project.cluster_assignments(clustering, ids)
    return {s: per_cluster.get(k, Prediction(cluster=k, reason=f"cluster {k} has no vector"))
            for s, k in assigned.items()}


