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


def labelled_embedding(project, run_id: int, split: str = "test"):
    """(ids, embedding, class index, class names) of the split's single-labelled samples."""
    ids, emb = project.embedding(run_id)
    df = project.samples() if split == "all" else project.samples(split=split)
    keep = np.isin(ids, df["id"].astype(str).to_numpy())
    ids, emb = ids[keep], emb[keep]
    if len(ids) == 0:
        raise ValueError(f"run {run_id}: no embedded samples in split {split!r}")
    names, y = project.labels_in_use(list(ids))
    if not names:
        raise ValueError(f"{project.path}: these samples have no labels to evaluate against")
    single = y.sum(1) == 1
    if single.sum() < 2:
        raise ValueError(f"run {run_id}: fewer than 2 samples with exactly one label in split {split!r}")
    return ids[single], emb[single], y[single].argmax(1), names


def evaluate_run(project, run_id: int, *, clustering: str | None = None, split: str | None = "test") -> Evaluation:
    from .metrics.classification import per_class_scores
    from .metrics.clustering import clustering_scores
    from .metrics.retrieval import retrieval_map
    from .metrics.table1 import table1

    ev = Evaluation()
    split = split or "all"
    try:
        ids, emb, y, names = labelled_embedding(project, run_id, split)
    except ValueError as exc:
        ev.notes.append(str(exc))
        return ev
    r = retrieval_map(emb, y, class_names=names)
    rows = [{"class": c, "mAP": v, "n": r.support[c]} for c, v in r.map_per_class.items()]
    rows += [{"class": "overall", "mAP": r.map, "n": len(ids)},
             {"class": "class-balanced", "mAP": r.map_balanced, "n": len(ids)}]
    ev.tables["Retrieval mAP"] = pd.DataFrame(rows)
    ev.curves["Retrieval precision-recall"] = [("all queries", r.recall, r.precision)]
    ev.curve_axes["Retrieval precision-recall"] = ("recall", "precision")
    t1 = table1(emb, y, class_names=names)
    ev.tables["Table 1 (inner-ear protocol)"] = pd.DataFrame(t1.table).T.rename_axis("metric").reset_index()
    if t1.curves:
        ev.curves["ROC per class"] = [(c, cv["fpr"], cv["tpr"]) for c, cv in t1.curves.items()]
        ev.curve_axes["ROC per class"] = ("false positive rate", "true positive rate")
        ev.curves["PR per class"] = [(c, cv["recall"], cv["precision"]) for c, cv in t1.curves.items()]
        ev.curve_axes["PR per class"] = ("recall", "precision")

    from .workflows.clustering import run_clustering

    # the run's own clustering: another run's clusters say nothing about this embedding
    clustering = clustering or run_clustering(project, run_id)
    if clustering is None:
        ev.notes.append(f"run {run_id} has no clustering yet: cluster its embedding to see clustering figures")
    if clustering:
        cids, assign = project.load_clustering(clustering)
        cluster_of = dict(zip(cids, assign))
        inside = np.array([s in cluster_of for s in ids])
        if inside.sum() >= 2:
            predicts = np.array([cluster_of[s] for s in ids[inside]])
            ev.tables["Clustering"] = pd.DataFrame(
                [{"clustering": clustering, "n": int(inside.sum()), **clustering_scores(y[inside], predicts)}])
        in_split = set(project.samples(split=None if split == "all" else split)["id"])
        ev.tables.update(_algorithm1_table(project, clustering, [s for s in cluster_of if s in in_split],
                                           per_class_scores))
    return ev


def _algorithm1_table(project, clustering, ids, per_class_scores) -> dict:
    """Per-class P/R/F1 of the effective cluster predictions (override, else Algorithm 1,
    labels >= 0.5) for labelled samples outside the development set."""
    from .workflows.mapping import cluster_predictions, sample_predictions

    per_cluster = cluster_predictions(project, clustering)
    if not any(p.source for p in per_cluster.values()):
        return {}
    names = project.label_names()
    dev = set(project.dev_ids())
    eval_ids = [s for s in ids if s not in dev]
    y_true = project.label_matrix(eval_ids, names)
    has = y_true.any(1)
    eval_ids = [s for s, h in zip(eval_ids, has) if h]
    y_true = y_true[has]
    if not eval_ids:
        return {}
    preds = sample_predictions(project, clustering, eval_ids, per_cluster=per_cluster)
    col = {n: j for j, n in enumerate(names)}
    y_pred = np.zeros_like(y_true)
    for i, s in enumerate(eval_ids):
        p = preds.get(s)
        for lab in (p.labels if p is not None else []):
            if lab in col:
                y_pred[i, col[lab]] = 1
    used = y_true.any(0) | y_pred.any(0)
    df = per_class_scores(y_true[:, used], y_pred[:, used], [n for n, u in zip(names, used) if u])
    return {"Algorithm 1 per-class F1": df.reset_index(names="class")}
