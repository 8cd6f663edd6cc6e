"""Radiological display orientation of a (z, y, x) volume from its direction cosines.

Shared by the image view and the previews, so a thumbnail shows a scan the way the view does:
axial slices seen from the feet, the patient's right on the left of the screen.
"""
from __future__ import annotations

import numpy as np


def radiological_transform(geometry, ndim: int):
    """(axes permutation, flips) that bring a (z, y, x) array with SimpleITK direction cosines
    to (inferior, posterior, left) axis order, or None without a usable direction. Each array
    axis maps to the physical LPS axis it is most aligned with (no resampling)."""
    g = geometry if isinstance(geometry, dict) else {}
    d = g.get("direction")
    if ndim != 3 or d is None or len(d) != 9:
        return None
    try:
        D = np.asarray(d, dtype=float).reshape(3, 3)  # columns: index axes i, j, k in LPS
    except (TypeError, ValueError):
        return None
    target_of_phys = {0: 2, 1: 1, 2: 0}        # LPS x -> array axis 2, y -> 1, z -> 0
    want_sign = {0: 1.0, 1: 1.0, 2: -1.0}      # +L, +P, and -S (inferior) along increasing index
    perm = [None, None, None]
    flips = []
    for a in range(3):                          # array axis a holds index axis n = 2 - a
        col = D[:, 2 - a]
        phys = int(np.argmax(np.abs(col)))
        t = target_of_phys[phys]
        if perm[t] is not None:
            return None                         # degenerate (oblique at 45 degrees): leave as is
        perm[t] = a
        if np.sign(col[phys]) != want_sign[phys]:
            flips.append(a)
    return tuple(perm), tuple(flips)


def apply_transform(a, tf, *, copy: bool = True):
    """``a`` in display orientation. ``copy=False`` gives a view (no voxel is read): a preview
    that needs one slice of a memory-mapped CT then reads that slice alone."""
    if tf is None:
        return a
    perm, flips = tf
    for ax in flips:
        a = np.flip(a, axis=ax)
    a = np.transpose(a, perm)
    return np.ascontiguousarray(a) if copy else a
