"""Small uint8 previews of any sample, for hover tips, neighbour strips and cluster panels."""
from __future__ import annotations

import numpy as np

from .focus import crop_around, structure_focus


def make_thumbnail(array: np.ndarray, *, size: int = 64, kind: str = "",
                   mask: np.ndarray | None = None) -> np.ndarray:
    """2D uint8 image at most ``size`` pixels on its long side.

    Volumes show their middle slice along the first axis; binary masks show their maximum
    projection (a thin vessel is invisible in a single slice). A volume given the ``mask`` of one
    of its structures shows the slice with the structure's largest cross-section, cropped around
    it: every structure of one scan would otherwise show the same slice. RGB(A) frames are
    converted to grey. Intensities are windowed to the 1st-99th percentiles.
    """
    a = np.asarray(array)
    if mask is not None and a.ndim == 3 and np.shape(mask) == a.shape:
        focus = structure_focus(mask)
        if focus is not None:
            z = focus[0]
            rows, cols = crop_around(np.asarray(mask)[z])
            a = a[z, rows, cols]
    if a.ndim == 3 and a.shape[-1] in (3, 4) and kind != "volume":
        a = a[..., :3].astype(np.float32).mean(-1)
    if a.ndim == 4:  # time or channel: first frame
        a = a[0]
    if a.ndim == 3:
        is_mask = kind == "mask" or (a.dtype != np.float32 and np.unique(a[:: max(1, a.shape[0] // 8)]).size <= 2)
        a = a.max(axis=0) if is_mask else a[a.shape[0] // 2]
    a = a.astype(np.float32)
    lo, hi = np.percentile(a, [1, 99]) if a.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(a.min(initial=0)), float(a.max(initial=1))
    a = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
    step = max(1, int(np.ceil(max(a.shape) / size)))
    a = a[::step, ::step]
    if max(a.shape) < size // 2:  # tiny MedMNIST images: upsample by repetition to stay legible
        rep = max(1, size // max(a.shape))
        a = np.kron(a, np.ones((rep, rep), dtype=np.float32))
    return (a * 255).astype(np.uint8)
