"""The figures the evaluation panel shows for the active run, computed headless.

For a run's stored embedding and the project's labels: clustering quality of the active
clustering (Hungarian accuracy, NMI, ARI, purity), retrieval mAP (leave-one-out cosine, as
DeepDiffusion's reference), the inner-ear paper's Table 1, and the ultrasound paper's
per-class precision/recall/F1 of the Algorithm-1 predictions on samples outside the
development set; plus the curves behind them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Evaluation:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: name -> list of (label, x, y) series, with axis titles in ``curve_axes``
    curves: dict[str, list] = field(default_factory=dict)
    curve_axes: dict[str, tuple[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def single_labels(project, ids) -> tuple[np.ndarray, list[str]]:
    """Class index per sample (-1 unlabelled or multi-label) over the labels these samples use."""
    names = project.label_names()
    y = project.label_matrix(list(ids), names)
    used = y.any(0)
    names = [n for n, u in zip(names, used) if u]
    y = y[:, used]
    out = np.where(y.sum(1) == 1, y.argmax(1), -1) if len(names) else np.full(len(ids), -1)
    return out, names


def evaluate_run(project, run_id: int, *, clustering: str | None = None, split: str | None = "test") -> Evaluation:
    from .metrics.classification import per_class_scores
    from .metrics.clustering import clustering_scores
    from .metrics.retrieval import retrieval_map
    from .pipeline import run_name

    ev = Evaluation()
    name = f"embeddings/{run_name(run_id)}"
    if not project.arrays.exists(name):
        ev.notes.append(f"run {run_id} has no embedding yet (train to the end, or `latentmap embed`)")
        return ev
    ids, emb = project.arrays.load(name)
    samples = project.samples(ids=list(ids))
    keep = np.ones(len(ids), dtype=bool) if split is None else (samples["split"].to_numpy() == split)
    if split is not None and not keep.any():
        keep[:] = True
        ev.notes.append(f"no {split!r} split: evaluated on all samples")
    y, names = single_labels(project, ids)
    labelled = keep & (y >= 0)
    where = f"{split} split" if split else "all samples"

    if labelled.sum() >= 2 and len(names) >= 2:
        r = retrieval_map(emb[labelled], y[labelled], class_names=names)
        rows = [{"class": c, "mAP": v, "n": r.support[c]} for c, v in r.map_per_class.items()]
        rows += [{"class": "overall", "mAP": r.map, "n": int(labelled.sum())},
                 {"class": "class-balanced", "mAP": r.map_balanced, "n": int(labelled.sum())}]
        ev.tables["Retrieval mAP"] = pd.DataFrame(rows)
        ev.curves["Retrieval precision-recall"] = [("all queries", r.recall, r.precision)]
        ev.curve_axes["Retrieval precision-recall"] = ("recall", "precision")
        try:
            from .metrics.table1 import table1

            t1 = table1(emb[labelled], y[labelled], class_names=names)
            ev.tables["Table 1 (inner-ear protocol)"] = (
                pd.DataFrame(t1.table).T.rename_axis("metric").reset_index())
            if t1.curves:
                ev.curves["ROC per class"] = [(c, cv["fpr"], cv["tpr"]) for c, cv in t1.curves.items()]
                ev.curve_axes["ROC per class"] = ("false positive rate", "true positive rate")
                ev.curves["PR per class"] = [(c, cv["recall"], cv["precision"]) for c, cv in t1.curves.items()]
                ev.curve_axes["PR per class"] = ("recall", "precision")
        except ImportError as exc:
            ev.notes.append(f"Table 1 unavailable: {exc}")
    else:
        ev.notes.append(f"fewer than two labelled samples or classes on the {where}: no retrieval figures")

    clustering = clustering or project.meta("active_clustering")
    if clustering:
        cids, assign = project.load_clustering(clustering)
        pos = {s: i for i, s in enumerate(ids)}
        sel = np.array([i for i, s in enumerate(cids) if s in pos and labelled[pos[s]]], dtype=int)
        if len(sel) >= 2:
            truth = y[[pos[cids[i]] for i in sel]]
            scores = clustering_scores(truth, assign[sel])
            ev.tables["Clustering"] = pd.DataFrame(
                [{"clustering": clustering, "n": len(sel), **scores}])
        ev.tables.update(_algorithm1_table(project, clustering, ids, keep, per_class_scores))
    if not ev.tables and not ev.notes:
        ev.notes.append("nothing to evaluate: the project has no labels")
    return ev


def _algorithm1_table(project, clustering, ids, keep, per_class_scores) -> dict:
    """Per-class P/R/F1 of cluster-label predictions (>= 0.5) for labelled non-dev samples."""
    vec = project.cluster_vectors(clustering)
    if vec.empty:
        return {}
    names = project.label_names()
    cids, assign = project.load_clustering(clustering)
    cluster_of = dict(zip(cids, assign))
    chosen = {}
    for k, grp in vec.groupby("cluster"):
        row = grp[grp["source"] == "manual"]
        row = row if not row.empty else grp[grp["source"] == "algorithm1"]
        if not row.empty:
            chosen[int(k)] = row.iloc[0]["vector"]
    dev = set(project.dev_ids())
    eval_ids = [s for s, k in zip(ids, keep) if k and s not in dev and s in cluster_of]
    y_true = project.label_matrix(eval_ids, names)
    has = y_true.any(1)
    eval_ids = [s for s, h in zip(eval_ids, has) if h]
    y_true = y_true[has]
    if not eval_ids:
        return {}
    y_pred = np.zeros_like(y_true)
    for i, s in enumerate(eval_ids):
        v = chosen.get(int(cluster_of[s]))
        if v:
            y_pred[i] = [float(v.get(n) or 0) >= 0.5 for n in names]
    used = y_true.any(0) | y_pred.any(0)
    df = per_class_scores(y_true[:, used], y_pred[:, used], [n for n, u in zip(names, used) if u])
    return {"Algorithm 1 per-class F1": df.reset_index(names="class")}
