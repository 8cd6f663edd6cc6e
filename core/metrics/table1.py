"""The inner-ear DeepDiffusion paper's Table 1 protocol (López Diez et al. 2023, section 4).

The paper: "each test feature vector f_b is considered to be the centroid of a kNN(f_b) which
consists in the k nearest features from other samples using the cosine pairwise distance. We
vary k until all the features from the corresponding class are within the cluster and compute
the precision and false positive rate per the different recall steps [...] The optimal or
maximum value of each metric corresponds to when the optimal sample [...] is being evaluated as
the centroid of its own class and the mean values are the average over all the samples."

Our reading, made exact (the paper gives no code for it):

* Query b (class c) ranks the other N-1 samples by cosine distance; the cluster kNN(f_b) grows
  k = 1, 2, ...; a sample inside the cluster is a predicted positive, "same class as b" is the
  truth. Tied distances enter the cluster together (thresholds on distance values).
* ROC curve: (FPR, TPR) over all k; ROC-AUC = its area (sklearn ``roc_auc_score`` with score
  = -distance). PR curve: precision at each recall step; PR-AUC = trapezoidal area of sklearn's
  ``precision_recall_curve``. AP = the retrieval AP of ``core.metrics.retrieval`` (pessimistic
  ties), so the overall mean AP equals the retrieval mAP (the paper's abstract quotes mAP).
* Accuracy = (TP + TN) / (N - 1) at the stopping point of the protocol: the smallest k whose
  cluster holds the whole class. F1 = the best F1 over k up to that point.
* Per class: "mean" = mean (and std) over the queries of that class; "max" = the best query of
  the class. Overall: "mean" = mean over all queries; "max" = the support-weighted mean of the
  per-class maxima (in the paper's Table 1 the overall max is below every class's max, so it is
  not a max over all queries; weighting by class size reproduces that pattern); "std" = the
  pooled within-class standard deviation, sqrt(sum_c n_c std_c^2 / sum_c n_c), built like the
  overall max from the per-class figures. (The std over all queries would mostly measure how
  far apart the class means are: accuracy at the stopping point depends on the class size, so
  with per-class stds of 0.033 and 0.008 it read 0.191.)
* A query whose class has no other member is skipped (nothing to retrieve).

Mean curves per class: TPR interpolated on a common FPR grid and precision interpolated on a
common recall grid, averaged over the class's queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .retrieval import cosine_distances, query_ranks

METRICS = ("accuracy", "roc_auc", "ap", "f1", "pr_auc")
GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class Table1Result:
    """``per_query``: one dict of metrics per evaluated query (with ``index`` and ``label``);
    ``table``: {row name: {class or "overall": value}} with rows "max <metric>", "mean <metric>",
    "std <metric>"; ``curves``: {class: {"fpr", "tpr", "recall", "precision"}} mean curves."""

    per_query: list = field(default_factory=list)
    table: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    support: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)

    def value(self, row: str, column: str = "overall") -> float:
        return self.table[row][column]


def query_metrics(dist_row: np.ndarray, same: np.ndarray) -> dict:
    """Table 1 metrics for one query: distances to the other samples and their relevance."""
    from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

    same = np.asarray(same, dtype=bool)
    n = len(same)
    pos = int(same.sum())
    score = -np.asarray(dist_row, dtype=np.float64)
    fpr, tpr, _ = roc_curve(same, score)
    precision, recall, _ = precision_recall_curve(same, score)
    rank, inner = query_ranks(np.asarray(dist_row), same)
    # cluster growth by distinct distance values: counts inside the cluster at each threshold
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(same[order])[last_of_tie]
    k = (np.arange(1, n + 1))[last_of_tie]
    fp = k - tp
    stop = int(np.argmax(tp == pos))                      # first threshold with the whole class
    tn_stop = (n - pos) - fp[stop]
    f1 = 2 * tp[:stop + 1] / (k[:stop + 1] + pos)
    return {"accuracy": float((tp[stop] + tn_stop) / n), "roc_auc": float(roc_auc_score(same, score)),
            "ap": float((inner / rank).mean()), "f1": float(f1.max()),
            "pr_auc": float(auc(recall, precision)), "k_full": int(k[stop]),
            "_fpr": fpr, "_tpr": tpr, "_recall": recall[::-1], "_precision": precision[::-1]}


def table1(embedding, labels, *, class_names=None, distances: np.ndarray | None = None) -> Table1Result:
    """Table 1 per class and overall for a labelled (test) embedding; see the module docstring."""
    emb = np.asarray(embedding)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.ndim != 1 or len(lab) != len(emb):
        raise ValueError(f"table1: need an N x D embedding and N labels, got {emb.shape} and {lab.shape}")
    n = len(emb)
    dist = cosine_distances(emb) if distances is None else np.asarray(distances)
    names = list(class_names) if class_names is not None else None

    def cname(c):
        return str(names[int(c)]) if names is not None else str(c)

    rows = []
    for i in range(n):
        keep = np.arange(n) != i
        same = (lab == lab[i])[keep]
        if not same.any() or same.all():
            continue  # nothing to retrieve, or nothing to tell apart
        m = query_metrics(dist[i][keep], same)
        m.update(index=i, label=cname(lab[i]))
        rows.append(m)
    if not rows:
        raise ValueError("table1: no query has both same-class and other-class samples")
    classes = [cname(c) for c in np.unique(lab)]
    classes = [c for c in classes if any(r["label"] == c for r in rows)]
    support = {c: sum(r["label"] == c for r in rows) for c in classes}
    table: dict = {}
    for metric in METRICS:
        mx, mean, std = {}, {}, {}
        for c in classes:
            v = np.array([r[metric] for r in rows if r["label"] == c])
            mx[c], mean[c], std[c] = float(v.max()), float(v.mean()), float(v.std())
        allv = np.array([r[metric] for r in rows])
        w = np.array([support[c] for c in classes], dtype=float)
        mx["overall"] = float(np.dot([mx[c] for c in classes], w) / w.sum())
        mean["overall"] = float(allv.mean())
        std["overall"] = float(np.sqrt(np.dot([std[c] ** 2 for c in classes], w) / w.sum()))
        table[f"max {metric}"], table[f"mean {metric}"], table[f"std {metric}"] = mx, mean, std
    curves = {}
    for c in classes:
        qs = [r for r in rows if r["label"] == c]
        tpr = np.mean([np.interp(GRID, q["_fpr"], q["_tpr"]) for q in qs], axis=0)
        prec = np.mean([np.interp(GRID, q["_recall"], q["_precision"]) for q in qs], axis=0)
        curves[c] = {"fpr": GRID, "tpr": tpr, "recall": GRID, "precision": prec}
    per_query = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return Table1Result(per_query=per_query, table=table, classes=classes, support=support, curves=curves)
