"""Stratified label fractions of a training split (10/20/50/100 % in the residual-SSL protocol)."""
from __future__ import annotations

import numpy as np


def stratified_fraction(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-stratified ``fraction`` of ``labels`` (1-D class ids; -1 =
    unlabelled, never chosen). Each class keeps round(fraction * n_c) samples, at least one, so
    a rare anomaly class stays present at 10 %. The same (labels, fraction, seed) always gives the
    same subset; nested for growing fractions with the same seed (the 10 % set lies in the 20 %)."""
    labels = np.asarray(labels).ravel()
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    chosen = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([int(seed), int(c)]).permutation(members)
        k = max(1, int(round(fraction * len(members))))
        chosen.append(order[:k])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)


def fraction_record(labels, fraction: float, seed: int, ids=None) -> dict:
    """What to store with a run so the subset can be rebuilt and audited."""
    idx = stratified_fraction(labels, fraction, seed)
    labels = np.asarray(labels).ravel()
    rec = {"fraction": float(fraction), "seed": int(seed), "n": int(len(idx)),
           "per_class": {int(c): int((labels[idx] == c).sum()) for c in np.unique(labels[idx])}}
    if ids is not None:
        rec["ids"] = [str(i) for i in np.asarray(ids)[idx]]
    return rec
