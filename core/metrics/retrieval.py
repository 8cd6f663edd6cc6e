"""Retrieval mean average precision exactly as DeepDiffusion's evaluation computes it.

Semantics of takahikof/DeepDiffusion ``utils/retrieval.py::retrieval`` (and the identical
paulalopez10 version): every sample in turn is the query; the others are ranked by cosine
distance (the query itself is left out); ranks use ``rankdata(..., 'max')`` so tied items are
ranked pessimistically (all at the last position of the tie); AP = mean over relevant items of
(rank among the relevant) / (rank overall); a query with no relevant item has AP = 1. The
precision-recall curve is interpolated at recall 0.05, 0.10, ..., 1.0 and averaged over queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

RECALL_STEP = 0.05


@dataclass
class RetrievalResult:
    """``map``: mean AP over all queries; ``map_per_class``: mean AP over the queries of each
    class; ``map_balanced``: mean of ``map_per_class`` (each class counts once);
    ``ap``: per-query AP; ``recall``/``precision``: the interpolated PR curve (None if not asked)."""

    map: float
    map_balanced: float
    map_per_class: dict = field(default_factory=dict)
    ap: np.ndarray | None = None
    recall: np.ndarray | None = None
    precision: np.ndarray | None = None
    support: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {"map": self.map, "map_balanced": self.map_balanced}
        out.update({f"map/{k}": v for k, v in self.map_per_class.items()})
        return out


def cosine_distances(x) -> np.ndarray:
    """Pairwise cosine distances as sklearn computes them (so ties match the reference)."""
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(np.asarray(x), metric="cosine")


def _check(embedding, labels):
    emb = np.asarray(embedding)
    lab = np.asarray(labels)
    if emb.ndim != 2:
        raise ValueError(f"retrieval: embedding must be N x D, got shape {emb.shape}")
    if lab.ndim != 1 or len(lab) != len(emb):
        raise ValueError(f"retrieval: labels must be one per embedding row ({len(emb)}), got shape {lab.shape}")
    if len(emb) < 2:
        raise ValueError("retrieval: need at least 2 samples")
    return emb, lab


def query_ranks(dist_row: np.ndarray, same: np.ndarray):
    """For one query's distances to the others and their relevance: (rank of each relevant item
    overall, its rank among the relevant), both with pessimistic ties."""
    rel = np.flatnonzero(same)
    rank = rankdata(dist_row, "max")[rel]
    inner = rankdata(dist_row[rel], "max")
    return rank, inner


def retrieval_map(embedding, labels, *, class_names=None, curve: bool = True,
                  distances: np.ndarray | None = None) -> RetrievalResult:
    """Leave-one-out cosine retrieval mAP (overall, per class, class-balanced) and the PR curve."""
    emb, lab = _check(embedding, labels)
    n = len(emb)
    dist = cosine_distances(emb) if distances is None else np.asarray(distances)
    recall_interp = np.arange(RECALL_STEP, 1.01, RECALL_STEP)
    ap = np.empty(n)
    prec_sum = np.zeros(len(recall_interp))
    others = ~np.eye(n, dtype=bool)
    for i in range(n):
        keep = others[i]
        d = dist[i][keep]
        same = (lab == lab[i])[keep]
        n_correct = int(same.sum())
        if n_correct == 0:
            ap[i] = 1.0
            prec_sum += 1.0  # consistent with AP = 1 (the reference's curve code fails here)
            continue
        rank, inner = query_ranks(d, same)
        ap[i] = float((inner / rank).mean())
        if curve:
            one_to_n = np.arange(1, n_correct + 1, dtype=np.float32)
            precision = one_to_n / np.sort(rank)
            recall = one_to_n / n_correct
            prec_sum += np.interp(recall_interp, recall, precision)
    classes = np.unique(lab)
    names = list(class_names) if class_names is not None else None

    def cname(c):
        return str(names[int(c)]) if names is not None else str(c)

    per_class = {cname(c): float(ap[lab == c].mean()) for c in classes}
    support = {cname(c): int((lab == c).sum()) for c in classes}
    return RetrievalResult(
        map=float(ap.mean()), map_balanced=float(np.mean(list(per_class.values()))),
        map_per_class=per_class, ap=ap, support=support,
        recall=recall_interp if curve else None, precision=prec_sum / n if curve else None)
