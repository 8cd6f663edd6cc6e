"""Multi-label classification figures as the ultrasound paper reports them (its Tables 1 and 2).

Per class: precision, recall, F1 and the number of positive labels (``n_labels``); plus their
average weighted by ``n_labels`` ("weighted avg"). Scores become decisions through one
threshold per class, chosen on the validation set as the value that maximises that class's F1
(paper section 3.2). Pure functions over numpy arrays; nothing here knows about models.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["per_class_scores", "best_f1_thresholds", "apply_thresholds", "report_table",
           "single_label_accuracy", "combination_vocabulary"]


def _as_2d(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be N x C (multi-hot / scores), got shape {a.shape}")
    return a


def per_class_scores(y_true, y_pred, label_names: Sequence[str] | None = None):
    """Precision, recall, F1 and ``n_labels`` per class and their ``n_labels``-weighted average.

    ``y_true``, ``y_pred``: N x C binary arrays (a prediction of nothing is allowed). A class
    with no predicted positive has precision 0; with no true positive, recall 0 (as sklearn's
    ``zero_division=0``). Returns a DataFrame indexed by class name with a final
    ``"weighted avg"`` row (weights = support; classes without support weigh nothing).
    """
    import pandas as pd

    t = _as_2d("y_true", y_true).astype(bool)
    p = _as_2d("y_pred", y_pred).astype(bool)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    c = t.shape[1]
    names = list(label_names) if label_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} label names for {c} classes")
    tp = (t & p).sum(0).astype(float)
    n_pred = p.sum(0).astype(float)
    support = t.sum(0).astype(float)
    precision = np.divide(tp, n_pred, out=np.zeros(c), where=n_pred > 0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    df = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                       "n_labels": support.astype(int)}, index=names)
    total = support.sum()
    w = support / total if total > 0 else np.zeros(c)
    df.loc["weighted avg"] = [float(w @ precision), float(w @ recall), float(w @ f1), int(total)]
    df["n_labels"] = df["n_labels"].astype(int)
    return df


def best_f1_thresholds(y_true, scores, *, default: float = 0.5) -> np.ndarray:
    """One threshold per class maximising that class's F1 of ``scores >= threshold``.

    Candidates are the distinct scores of the class (every distinct decision is reached by one
    of them); on a tie the highest threshold wins (fewest positives). A class without any
    positive in ``y_true`` cannot be tuned (F1 is 0 whatever the threshold) and gets
    ``default``.
    """
    t = _as_2d("y_true", y_true).astype(bool)
    s = _as_2d("scores", scores).astype(np.float64)
    if t.shape != s.shape:
        raise ValueError(f"y_true {t.shape} and scores {s.shape} differ in shape")
    out = np.full(t.shape[1], float(default))
    for c in range(t.shape[1]):
        n_pos = t[:, c].sum()
        if n_pos == 0:
            continue
        order = np.argsort(-s[:, c], kind="stable")
        ss, tt = s[order, c], t[order, c]
        tp = np.cumsum(tt)
        # Last index of each run of equal scores: predicting ">= that score" takes the whole run.
        ends = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
        f1 = 2 * tp[ends] / ((ends + 1) + n_pos)
        out[c] = ss[ends[int(np.argmax(f1))]]
    return out


def apply_thresholds(scores, thresholds) -> np.ndarray:
    """Multi-hot decisions ``scores >= thresholds`` (per-class thresholds broadcast over rows)."""
    s = _as_2d("scores", scores)
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim == 0:
        th = np.full(s.shape[1], float(th))
    if th.shape != (s.shape[1],):
        raise ValueError(f"{th.shape[0]} thresholds for {s.shape[1]} classes")
    return (s >= th).astype(np.float32)


def single_label_accuracy(y_true, scores) -> float:
    """Top-1 accuracy: ``y_true`` class ids (N,) or one-hot rows, ``scores`` N x C."""
    y = np.asarray(y_true)
    if y.ndim == 2:
        y = y.argmax(1)
    s = _as_2d("scores", scores)
    return float((s.argmax(1) == y).mean()) if len(y) else float("nan")


def combination_vocabulary(y, max_combinations: int = 0) -> np.ndarray:
    """The distinct label combinations of multi-hot ``y`` (K x C), most frequent first.

    The paper turns a multi-label target into a single label over the K most common label
    combinations (section 2.2.3); ``max_combinations`` = 0 keeps every combination seen. Rows
    without any label are not a combination.
    """
    y = _as_2d("y", y).astype(np.int8)
    y = y[y.sum(1) > 0]
    if len(y) == 0:
        return np.zeros((0, np.asarray(y).shape[1]), dtype=np.float32)
    combos, counts = np.unique(y, axis=0, return_counts=True)
    order = np.lexsort((np.arange(len(counts)), -counts))  # by count, ties in first-seen order
    combos = combos[order]
    if max_combinations:
        combos = combos[:max_combinations]
    return combos.astype(np.float32)


def report_table(df, *, digits: int = 2, percent: bool = True) -> str:
    """Text table laid out as the paper's Table 1: rows F1 / precision / recall / n_labels."""
    names = list(df.index)
    scale = 100.0 if percent else 1.0
    width = max(9, *(len(n) for n in names)) + 1
    lines = ["".ljust(11) + "".join(n.rjust(width) for n in names)]
    for row, col in (("F1-score", "f1"), ("Precision", "precision"), ("Recall", "recall")):
        lines.append(row.ljust(11) + "".join(f"{df.loc[n, col] * scale:.{digits}f}".rjust(width)
                                             for n in names))
    lines.append("n_labels".ljust(11) + "".join(str(int(df.loc[n, "n_labels"])).rjust(width)
                                                for n in names))
    return "\n".join(lines)
