"""Intensity normalisation: percentile scaling (inner-ear paper) and per-image z-scoring."""
from __future__ import annotations

import numpy as np

__all__ = ["percentile_normalise", "zscore"]


def _values(x: np.ndarray, mask) -> np.ndarray:
    if mask is None:
        return x
    m = np.asarray(mask, dtype=bool)
    if m.shape != x.shape:
        raise ValueError(f"mask shape {m.shape} differs from image shape {x.shape}")
    if not m.any():
        raise ValueError("mask selects no voxel to compute the statistics from")
    return x[m]


def percentile_normalise(image, lower: float = 5.0, upper: float = 95.0, *, clip: bool = False,
                         mask=None) -> np.ndarray:
    """Map the ``lower`` and ``upper`` percentiles of an image to 0 and 1 (float32).

    Values beyond stay beyond (set ``clip`` to cut them to [0, 1]). ``mask`` restricts the
    statistics to a region (e.g. the body). A constant image maps to zeros.
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(_values(x, mask), [lower, upper])
    if not hi > lo:
        return np.zeros_like(x)
    out = (x - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0) if clip else out


def zscore(image, *, mask=None, eps: float = 1e-8) -> np.ndarray:
    """Per-image standardisation to zero mean and unit standard deviation (float32).

    Statistics over the whole image or over ``mask``; a constant image maps to zeros.
    """
    x = np.asarray(image, dtype=np.float32)
    v = _values(x, mask).astype(np.float64)
    mean, std = v.mean(), v.std()
    if std <= eps:
        return (x - np.float32(mean)) * 0.0
    return ((x - mean) / std).astype(np.float32)
