"""Binary anomaly-classification metrics as the residual-SSL reference evaluates them.

Scores are anomaly probabilities (softmax[:, 1]); labels 1 = anomalous, 0 = normal.
The decision threshold is the F1-best point of a precision-recall curve, taken on the VALIDATION
set and then applied to the test set (``scores > threshold``, strictly, as the reference).
"""
from __future__ import annotations

import numpy as np


def _check(scores, labels):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    return scores, labels


def auroc(scores, labels) -> float:
    from sklearn.metrics import auc, roc_curve

    scores, labels = _check(scores, labels)
    if labels.min() == labels.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(auc(fpr, tpr))


def auprc(scores, labels) -> float:
    """Average precision (sklearn ``average_precision_score``), as the reference's AUPRC."""
    from sklearn.metrics import average_precision_score

    scores, labels = _check(scores, labels)
    if labels.max() == 0:
        return float("nan")
    return float(average_precision_score(labels, scores))


def f1_best_threshold(scores, labels) -> float:
    """Threshold of the PR-curve point with the highest F1 (NaN F1 counted as 0)."""
    from sklearn.metrics import precision_recall_curve

    scores, labels = _check(scores, labels)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    # precision/recall have one more entry than thresholds (the (1, 0) end point).
    return float(thresholds[min(int(np.argmax(f1)), len(thresholds) - 1)])


def roc_fpr_threshold(scores, labels, max_fpr: float) -> float:
    """First ROC threshold whose false-positive rate exceeds ``max_fpr`` (reference semantics)."""
    from sklearn.metrics import roc_curve

    scores, labels = _check(scores, labels)
    fpr, _, thresholds = roc_curve(labels, scores)
    return float(thresholds[int(np.argmax(fpr > max_fpr))])


def metrics_at_threshold(scores, labels, threshold: float) -> dict:
    """Precision, recall, F1, specificity and accuracy of ``scores > threshold``."""
    scores, labels = _check(scores, labels)
    pred = scores > threshold
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    tn = int(np.sum(~pred & (labels == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    accuracy = (tp + tn) / max(1, len(labels))
    return {"precision": precision, "recall": recall, "f1": f1, "specificity": specificity,
            "accuracy": accuracy, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def anomaly_report(scores, labels, *, threshold: float | None = None) -> dict:
    """AUPRC, AUROC and the thresholded figures. ``threshold``: from validation; when None the
    F1-best threshold of these scores themselves is used (optimistic: say so when reporting)."""
    scores, labels = _check(scores, labels)
    if threshold is None:
        threshold = f1_best_threshold(scores, labels)
    out = {"auprc": auprc(scores, labels), "auroc": auroc(scores, labels), "threshold": float(threshold)}
    out.update(metrics_at_threshold(scores, labels, threshold))
    return out
