"""Fine clusters merged into K: average-linkage agglomeration of the over-clusters' centroids.

A deep clustering method's K-cluster head (PICA's target head) and K-means on its features both
settle on one partition early and keep it. Its over-clustering (PICA's 7 x K head, DeepCluster's
8 x K) is purer (purity 0.82-0.85 against 0.67 on OrganAMNIST), so joining those clusters by how
close their centroids are can recover classes the K-cluster partition split or merged. Average
linkage (mean pairwise cosine distance between centroids), chosen on the validation split of the
saved benchmark checkpoints over Ward, complete and single linkage. On the OrganAMNIST test split
(``bench/results/merged_overclusters.md``) it beat K-means on DeepCluster's features by
+0.09 to +0.16 accuracy, and it did so stably. On PICA's over-clusters it is not stable. That head's
top probability averages 0.35, so its argmax flips between near-tied clusters: in bf16 it
disagrees with float32 on up to 45 % of the images, and the merge of those argmaxes swings from
0.673 to 0.571 accuracy. :func:`merge_soft_overclusters` is the merge for such a head: centroids
weighted by the head's probabilities and each row in the merged cluster holding most of its
probability mass, which depends on no near tie (bf16 and float32 inference give the same
partition: ARI 0.993-0.999 on the saved checkpoints). Its accuracy still varies with the
training seed (0.45-0.70 over four 8-epoch runs, level with the K-cluster head on average).
"""
from __future__ import annotations

import numpy as np

from .kmeans import l2_normalise


def cluster_centroids(features, assign) -> tuple[np.ndarray, np.ndarray]:
    """``(used cluster ids, unit centroids)``: the normalised mean of each used cluster's
    l2-normalised rows (what the workflows place new samples by, and what merging joins)."""
    x = l2_normalise(features)
    assign = np.asarray(assign, dtype=int)
    used = np.unique(assign)
    sums = np.zeros((used.size, x.shape[1]), dtype=np.float64)
    np.add.at(sums, np.searchsorted(used, assign), x)
    return used, l2_normalise(sums)


def _average_linkage(cents, n_clusters: int) -> np.ndarray:
    """Group of each centroid: average-linkage agglomeration (cosine distance) into ``n_clusters``."""
    from sklearn.cluster import AgglomerativeClustering

    n_clusters = int(n_clusters)
    if not 1 <= n_clusters <= len(cents):
        raise ValueError(f"cannot merge {len(cents)} used clusters into {n_clusters}")
    if n_clusters == len(cents):
        return np.arange(len(cents))
    return AgglomerativeClustering(n_clusters=n_clusters, metric="cosine", linkage="average").fit(cents).labels_


def merge_overclusters(features, assign, n_clusters: int, *, fit_mask=None) -> np.ndarray:
    """Each row's merged cluster (0..n_clusters-1): the over-clusters of ``assign`` joined by
    average-linkage agglomeration of their centroids (cosine distance) into ``n_clusters``.

    ``fit_mask``: rows whose features make the centroids (e.g. the training images); rows of an
    over-cluster with no such row go to the merged cluster of the nearest centroid.
    """
    features = np.asarray(features)
    assign = np.asarray(assign, dtype=int)
    if len(features) != len(assign):
        raise ValueError(f"{len(features)} feature rows but {len(assign)} cluster assignments")
    fit = np.ones(len(assign), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    used, cents = cluster_centroids(features[fit], assign[fit])
    groups = _average_linkage(cents, n_clusters)
    out = np.empty(len(assign), dtype=int)
    known = np.isin(assign, used)
    out[known] = groups[np.searchsorted(used, assign[known])]
    if (~known).any():  # an over-cluster only outside fit_mask: nearest fitted centroid
        near = np.argmax(l2_normalise(features[~known]) @ cents.T, axis=1)
        out[~known] = groups[near]
    return out


def merged_from_proba(proba, groups) -> np.ndarray:
    """Each row's merged cluster: the group of over-clusters holding most of its probability
    (``groups[j]``: merged cluster of over-cluster ``j``). How new samples join a soft merge."""
    proba = np.asarray(proba, dtype=np.float64)
    groups = np.asarray(groups, dtype=int)
    if proba.ndim != 2 or proba.shape[1] != len(groups):
        raise ValueError(f"probabilities of shape {proba.shape} for {len(groups)} over-clusters")
    mass = np.zeros((len(proba), int(groups.max()) + 1))
    for g in np.unique(groups):
        mass[:, g] = proba[:, groups == g].sum(1)
    return mass.argmax(1)


def merge_soft_overclusters(features, proba, n_clusters: int, *, fit_mask=None,
                            min_mass: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``(merged cluster of each row, merged cluster of each over-cluster)`` from a head's
    probabilities ``proba`` (N x C) rather than its argmax.

    Each over-cluster's centroid is the probability-weighted mean of the ``fit_mask`` rows'
    l2-normalised features; the centroids of over-clusters holding at least ``min_mass`` of an
    even share of the probability are joined by average linkage (cosine) into ``n_clusters``, the
    others go to the group of their nearest such centroid; a row then goes to the group with
    most of its probability (:func:`merged_from_proba`). Neither step hangs on which of two
    near-tied over-clusters wins a row.
    """
    features = np.asarray(features)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(features) != len(proba):
        raise ValueError(f"{len(features)} feature rows but probabilities of shape {proba.shape}")
    fit = np.ones(len(proba), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    p = proba[fit]
    cents = l2_normalise(p.T @ l2_normalise(features[fit]).astype(np.float64))
    mass = p.sum(0)
    used = mass >= min_mass * mass.sum() / len(mass)
    groups = np.empty(len(mass), dtype=int)
    groups[used] = _average_linkage(cents[used], n_clusters)
    if (~used).any():
        groups[~used] = groups[used][np.argmax(cents[~used] @ cents[used].T, axis=1)]
    return merged_from_proba(proba, groups), groups
