"""Where to look at one structure of a scan: its largest cross-sections and its extent there.

A structure sample (a liver, a kidney, a cochlea) shares its scan's array. The scan's middle slice
need not cross the structure at all (a cochlea lies far from the middle of a head CT), so the image
view opens on the structure and previews show a crop around it.
"""
from __future__ import annotations

import numpy as np


def structure_focus(mask: np.ndarray) -> tuple[int, ...] | None:
    """Per axis, the index of the slice through ``mask`` with the most voxels; None when empty."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 0 or m.size == 0:
        return None
    # one pass over the first axis, then the rest on the slab the structure occupies: a small
    # organ in a 512 x 512 x 300 CT is counted in a fraction of the voxels
    first = np.count_nonzero(m.reshape(m.shape[0], -1), axis=1)
    hit = np.flatnonzero(first)
    if not hit.size:
        return None
    slab = m[hit[0]: hit[-1] + 1]
    out = [int(np.argmax(first))]
    for axis in range(1, m.ndim):
        others = tuple(a for a in range(m.ndim) if a != axis)
        out.append(int(np.argmax(np.count_nonzero(slab, axis=others))))
    return tuple(out)


def crop_around(mask2d: np.ndarray, *, margin: float = 0.5, min_margin: int = 4) -> tuple[slice, slice]:
    """Rows and columns of ``mask2d``'s bounding box, widened on each side by ``margin`` times its
    size (at least ``min_margin`` pixels) so the preview shows what surrounds the structure."""
    m = np.asarray(mask2d, dtype=bool)
    if m.ndim != 2 or not m.any():
        raise ValueError("crop_around needs a non-empty 2D mask")
    box = []
    for axis in (0, 1):
        idx = np.flatnonzero(m.any(axis=1 - axis))
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        pad = max(min_margin, int(round(margin * (hi - lo))))
        box.append(slice(max(0, lo - pad), min(m.shape[axis], hi + pad)))
    return box[0], box[1]
