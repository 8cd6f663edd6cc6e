"""Algorithm-1 predictions as a user can judge them (no Qt): for every cluster of the active
clustering, the labels its vector predicts, their score (the vector's value: the share of the
cluster's development samples carrying the label), the support (how many development samples
back the vector), a low-support flag, and, when nothing is predicted, the reason why.

A manual override wins over Algorithm 1, as in ``ProjectModel.predicted_labels``; it has no
development support and is shown as set by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: a label is predicted when its share in the cluster's vector reaches this (as the CLI does)
THRESHOLD = 0.5
#: a vector backed by fewer development samples than this is flagged "low support"
MIN_SUPPORT = 2


@dataclass
class Prediction:
    labels: list = field(default_factory=list)   # predicted label names, best first
    score: float | None = None                    # the vector's value of the best predicted label
    support: int = 0                              # development samples behind the vector
    source: str = ""                              # "manual", "algorithm1" or "" (none)
    cluster: int | None = None
    vector: dict = field(default_factory=dict)
    reason: str = ""                              # why there is no prediction ('' when there is one)

    @property
    def low_support(self) -> bool:
        return self.source == "algorithm1" and self.support < MIN_SUPPORT

    @property
    def text(self) -> str:
        """'spleen' or '(none)'; the label names only."""
        return ", ".join(self.labels) if self.labels else ""

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


def cluster_predictions(project, clustering: str, *, threshold: float = THRESHOLD) -> dict[int, Prediction]:
    """Prediction of every cluster of ``clustering`` (unmatched clusters included)."""
    ids, assign = project.load_clustering(clustering)
    clusters = sorted({int(a) for a in assign})
    vec = project.cluster_vectors(clustering)
    rows = {(int(r.cluster), r.source): r for r in vec.itertuples()}
    alg1_run = any(src == "algorithm1" for _, src in rows)
    out: dict[int, Prediction] = {}
    for k in clusters:
        row = rows.get((k, "manual")) or rows.get((k, "algorithm1"))
        if row is None:
            reason = (f"cluster {k} has no development-set sample (unmatched): label one of its members "
                      "and mark it as development set, then rerun Algorithm 1") if alg1_run else \
                "Algorithm 1 has not been run on this clustering yet (Clusters panel)"
            out[k] = Prediction(cluster=k, reason=reason)
            continue
        v = {str(a): (None if b is None else float(b)) for a, b in (row.vector or {}).items()}
        names = sorted((a for a, b in v.items() if b is not None and b >= threshold), key=lambda a: -v[a])
        p = Prediction(labels=names, score=v[names[0]] if names else None,
                       support=int(row.n_dev or 0) if row.source == "algorithm1" else 0,
                       source=row.source, cluster=k, vector=v)
        if not names:
            p.reason = (f"no label reaches {threshold:.2f} in cluster {k}'s vector "
                        f"({p.top() or 'all zero'}; {p.support} dev samples)")
        out[k] = p
    return out


def sample_predictions(model) -> dict[str, Prediction]:
    """sample id -> Prediction for the samples of the model's active clustering."""
    cl = model.clustering()
    if cl is None:
        return {}
    per = cluster_predictions(model.project, model.active_clustering)
    return {sid: per[int(c)] for sid, c in cl.items() if int(c) in per}


def prediction_for(model, sample_id: str, cache: dict | None = None) -> Prediction:
    """The Prediction of one sample, with a reason when the sample is outside the clustering."""
    if not model.active_clustering:
        return Prediction(reason="no clustering yet: train or apply a method, then cluster")
    if cache is not None:
        p = cache.get(sample_id)
    else:
        cl = model.clustering()
        c = cl.get(sample_id) if cl is not None else None
        p = None if c is None else cluster_predictions(model.project, model.active_clustering).get(int(c))
    if p is None:
        return Prediction(reason=f"not in clustering {model.active_clustering}")
    return p
