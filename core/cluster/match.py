"""Algorithm 1 of the ultrasound paper: name each cluster by the mean label vector of its
development-set members, then predict any sample's labels from its cluster's vector.

Label vectors have C + 1 entries: the C labels of the label set and a last "other" entry that
is 1 for a development sample carrying none of the C labels. This is the paper's v in
{0, 1}^(C+1): its C organs plus "other" (an image where none of the organs of interest is
visible). A label set that already has its own "other" label (as the TotalSegmentator slice
tags) passes ``other=False`` and gets K x C vectors. A single-label set gives one-hot rows, so
its vectors are class frequencies per cluster.

Clusters without a development sample are *unmatched*: their row is NaN and ``matched`` is
False; a sample in such a cluster gets no label at all (not a zero-score guess that would
count as a confident "absent").
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["ClusterMatch", "match_clusters", "cluster_scores", "predict_from_clusters",
           "fit_cluster_thresholds", "match_to_vectors", "save_match", "OTHER"]

OTHER = "other"


class ClusterMatch(NamedTuple):
    """``vectors``: K x (C+1) mean dev-set label vectors (NaN rows for unmatched clusters);
    ``counts``: development samples per cluster."""

    vectors: np.ndarray
    counts: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        return self.counts > 0

    @property
    def unmatched(self) -> np.ndarray:
        """Indices of clusters without any development sample."""
        return np.flatnonzero(self.counts == 0)


def _label_matrix(labels, n_classes: int | None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 1:  # class ids -> one-hot
        ids = y.astype(int)
        if (ids < 0).any():
            raise ValueError("class ids must be >= 0 (mark unlabelled samples by leaving them out)")
        c = int(n_classes) if n_classes else (int(ids.max()) + 1 if len(ids) else 0)
        if len(ids) and ids.max() >= c:
            raise ValueError(f"class id {ids.max()} out of range for {c} classes")
        out = np.zeros((len(ids), c), dtype=np.float64)
        out[np.arange(len(ids)), ids] = 1.0
        return out
    if y.ndim != 2:
        raise ValueError(f"labels must be N x C multi-hot or N class ids, got shape {y.shape}")
    return (y > 0).astype(np.float64)


def match_clusters(assignments, dev_labels, n_clusters: int | None = None, *, n_classes: int | None = None,
                   other: bool = True) -> ClusterMatch:
    """Algorithm 1: v_k = (1/|k|) sum of the label vectors of the dev samples assigned to cluster k.

    ``assignments``: cluster (argmax of P) of each development sample; ``dev_labels``: their
    N x C multi-hot labels, or N class ids (one-hot encoded over ``n_classes``);
    ``n_clusters``: K (default: max assignment + 1). With ``other`` (default) a final column
    marks dev samples without any of the C labels.
    """
    a = np.asarray(assignments)
    if a.ndim != 1:
        raise ValueError(f"assignments must be one cluster per sample, got shape {a.shape}")
    y = _label_matrix(dev_labels, n_classes)
    if len(y) != len(a):
        raise ValueError(f"{len(a)} cluster assignments but {len(y)} label rows")
    a = a.astype(int)
    if len(a) and a.min() < 0:
        raise ValueError("cluster assignments must be >= 0")
    k = int(n_clusters) if n_clusters is not None else (int(a.max()) + 1 if len(a) else 0)
    if len(a) and a.max() >= k:
        raise ValueError(f"cluster {a.max()} out of range for n_clusters={k}")
    if other:
        y = np.hstack([y, (y.sum(1) == 0)[:, None].astype(np.float64)])
    sums = np.zeros((k, y.shape[1]))
    np.add.at(sums, a, y)
    counts = np.bincount(a, minlength=k).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        vectors = sums / counts[:, None]
    vectors[counts == 0] = np.nan
    return ClusterMatch(vectors, counts)


def cluster_scores(match: ClusterMatch, assignments) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's cluster vector as its label scores, and a mask of samples whose cluster is
    matched (rows of unmatched samples are NaN)."""
    a = np.asarray(assignments).astype(int)
    k = len(match.counts)
    if len(a) and (a.min() < 0 or a.max() >= k):
        raise ValueError(f"assignments outside 0..{k - 1}")
    return match.vectors[a], match.matched[a]


def predict_from_clusters(match: ClusterMatch, assignments, thresholds=0.5) -> np.ndarray:
    """Multi-hot prediction: the cluster's vector thresholded per class (``>=``). Samples in
    unmatched clusters predict no label."""
    scores, ok = cluster_scores(match, assignments)
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (scores.shape[1],))
    out = np.zeros(scores.shape, dtype=bool)
    out[ok] = scores[ok] >= th
    return out


def fit_cluster_thresholds(match: ClusterMatch, assignments, labels, *, n_classes: int | None = None,
                           other: bool = True, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds on the cluster vectors maximising each class's F1 on a validation set
    (``assignments`` and ``labels`` of validation samples), as the paper chooses them.
    Samples in unmatched clusters take no part."""
    from ..metrics.classification import best_f1_thresholds

    y = _label_matrix(labels, n_classes or (match.vectors.shape[1] - (1 if other else 0)))
    if other:
        y = np.hstack([y, (y.sum(1) == 0)[:, None]])
    scores, ok = cluster_scores(match, assignments)
    if y.shape[1] != scores.shape[1]:
        raise ValueError(f"labels have {y.shape[1]} columns, cluster vectors {scores.shape[1]}")
    if not ok.any():
        return np.full(scores.shape[1], float(default))
    return best_f1_thresholds(y[ok], scores[ok], default=default)


def match_to_vectors(match: ClusterMatch, label_names: Sequence[str], *, other: bool = True):
    """``({cluster: {label: value}}, {cluster: n_dev})`` for ``Project.save_cluster_vectors``;
    unmatched clusters get no vector (and count 0)."""
    names = list(label_names) + ([OTHER] if other else [])
    if len(names) != match.vectors.shape[1]:
        raise ValueError(f"{len(names)} label names for {match.vectors.shape[1]} vector columns")
    vectors = {int(k): {n: float(v) for n, v in zip(names, match.vectors[k])}
               for k in np.flatnonzero(match.matched)}
    counts = {int(k): int(c) for k, c in enumerate(match.counts)}
    return vectors, counts


def save_match(project, clustering: str, match: ClusterMatch, label_names: Sequence[str], *,
               other: bool = True) -> None:
    """Store the Algorithm-1 vectors of ``clustering`` in the project (source ``algorithm1``)."""
    vectors, counts = match_to_vectors(match, label_names, other=other)
    project.save_cluster_vectors(clustering, vectors, counts)
