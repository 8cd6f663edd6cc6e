"""Clustering quality against reference labels: Hungarian accuracy, NMI, ARI, cluster purity.

Pure functions of two integer label vectors. ``hungarian_accuracy``/``nmi``/``ari`` reproduce
PICA's ``main.py::evaluate`` (count matrix, ``linear_sum_assignment(max - C)``, scikit-learn
defaults); ``purity`` is DeepMCAT's equation 3, CP = (1/N) sum_k max_j |x_k ∩ l_j|.
"""
from __future__ import annotations

import numpy as np

__all__ = ["contingency", "hungarian_accuracy", "hungarian_mapping", "nmi", "ari", "purity", "reference_labels",
           "clustering_scores"]


def _as_labels(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected one integer label per sample, got shape {a.shape}")
    return a


def _pair(labels, predicts):
    labels, predicts = _as_labels(labels, "labels"), _as_labels(predicts, "predicts")
    if len(labels) != len(predicts):
        raise ValueError(f"{len(labels)} labels but {len(predicts)} cluster assignments")
    if len(labels) == 0:
        raise ValueError("no samples to score")
    return labels, predicts


def contingency(predicts, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count matrix C[cluster, class] and the cluster and class values its rows/columns stand for."""
    labels, predicts = _pair(labels, predicts)
    clusters, ci = np.unique(predicts, return_inverse=True)
    classes, li = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (ci, li), 1)
    return counts, clusters, classes


def hungarian_mapping(labels, predicts) -> dict:
    """The one-to-one cluster -> class assignment maximising agreement (clusters beyond the
    number of classes stay unmapped)."""
    from scipy.optimize import linear_sum_assignment

    counts, clusters, classes = contingency(predicts, labels)
    rows, cols = linear_sum_assignment(counts.max() - counts)
    return {clusters[r].item(): classes[c].item() for r, c in zip(rows, cols)}


def hungarian_accuracy(labels, predicts) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (PICA's ACC)."""
    from scipy.optimize import linear_sum_assignment

    counts, _, _ = contingency(predicts, labels)
    rows, cols = linear_sum_assignment(counts.max() - counts)
    return float(counts[rows, cols].sum() / counts.sum())


def nmi(labels, predicts, *, average_method: str = "arithmetic") -> float:
    """Normalised mutual information. ``arithmetic`` is 2 I / (H(X) + H(Y)) (DeepMCAT eq. 2 and
    scikit-learn's default since 0.22); ``geometric`` was the default when DeepCluster appeared."""
    from sklearn.metrics import normalized_mutual_info_score

    labels, predicts = _pair(labels, predicts)
    return float(normalized_mutual_info_score(labels, predicts, average_method=average_method))


def ari(labels, predicts) -> float:
    from sklearn.metrics import adjusted_rand_score

    labels, predicts = _pair(labels, predicts)
    return float(adjusted_rand_score(labels, predicts))


def purity(labels, predicts) -> float:
    """Cluster purity (DeepMCAT eq. 3): the fraction of samples in their cluster's majority class.

    It rises with the number of clusters (one sample per cluster is pure), so compare it only
    between clusterings with the same number of clusters.
    """
    counts, _, _ = contingency(predicts, labels)
    return float(counts.max(1).sum() / counts.sum())


def clustering_scores(labels, predicts) -> dict:
    """All four at once, keyed ``acc``, ``nmi``, ``ari``, ``purity``."""
    return {"acc": hungarian_accuracy(labels, predicts), "nmi": nmi(labels, predicts),
            "ari": ari(labels, predicts), "purity": purity(labels, predicts)}


def reference_labels(y) -> np.ndarray:
    """One integer reference class per sample from a SampleSet's ``y`` (N x C multi-hot).

    Single-label rows give their class; multi-label rows give the id of their label
    combination (the ultrasound paper clusters label combinations); unlabelled rows give -1.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        return y.astype(int)
    out = np.full(len(y), -1, dtype=int)
    lab = y.sum(1) > 0
    if lab.any():
        if (y[lab].sum(1) == 1).all():
            out[lab] = y[lab].argmax(1)
        else:
            _, inv = np.unique((y[lab] > 0).astype(np.uint8), axis=0, return_inverse=True)
            out[lab] = inv.ravel()
    return out
