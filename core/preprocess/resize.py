"""2-D / 3-D resizing and region-of-interest cropping."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["resize", "bounding_box", "crop_box", "crop_to_mask"]


def resize(image, shape: Sequence[int], *, is_label: bool = False, anti_aliasing: bool | None = None):
    """Resize a 2-D or 3-D array to ``shape`` (a trailing colour axis of a 2-D image is kept).

    Images: linear interpolation to float32, with Gaussian anti-aliasing when shrinking.
    Label maps (``is_label``): nearest neighbour, dtype and label ids kept.
    """
    from skimage.transform import resize as sk_resize

    x = np.asarray(image)
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"target shape must be positive, got {shape}")
    channels = x.ndim == len(shape) + 1 and len(shape) == 2 and x.shape[-1] in (3, 4)
    if len(shape) not in (2, 3) or (x.ndim != len(shape) and not channels):
        raise ValueError(f"cannot resize an array of shape {x.shape} to {shape}: "
                         "give one size per spatial axis (2-D or 3-D)")
    out_shape = shape + ((x.shape[-1],) if channels else ())
    if is_label:
        out = sk_resize(x, out_shape, order=0, mode="edge", preserve_range=True,
                        anti_aliasing=False)
        return out.astype(x.dtype)
    if anti_aliasing is None:
        anti_aliasing = any(n > s for n, s in zip(x.shape, shape))
    out = sk_resize(x.astype(np.float32), out_shape, order=1, mode="edge", preserve_range=True,
                    anti_aliasing=anti_aliasing)
    return out.astype(np.float32)


def bounding_box(mask, margin=0) -> tuple[slice, ...]:
    """Slices of the smallest box holding every non-zero voxel, grown by ``margin`` voxels
    (a number or one per axis) and clipped to the array."""
    m = np.asarray(mask)
    if not m.any():
        raise ValueError("mask is empty: it has no bounding box")
    margin = np.broadcast_to(np.asarray(margin, dtype=int), (m.ndim,))
    box = []
    for axis in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != axis)
        nz = np.flatnonzero(m.any(axis=other) if other else m)
        lo = max(0, int(nz[0]) - int(margin[axis]))
        hi = min(m.shape[axis], int(nz[-1]) + 1 + int(margin[axis]))
        box.append(slice(lo, hi))
    return tuple(box)


def crop_box(image, start: Sequence[int], stop: Sequence[int], *, pad_value=0) -> np.ndarray:
    """Crop ``image[start:stop]`` per axis; parts of the box outside the image are padded with
    ``pad_value``, so the result always has shape ``stop - start`` (a fixed-size ROI)."""
    x = np.asarray(image)
    start = [int(s) for s in start]
    stop = [int(s) for s in stop]
    if len(start) != len(stop) or len(start) > x.ndim:
        raise ValueError(f"box {start}..{stop} does not fit an array of {x.ndim} axes")
    if any(b <= a for a, b in zip(start, stop)):
        raise ValueError(f"empty box: start {start} must be below stop {stop}")
    src, pad = [], []
    for a, b, n in zip(start, stop, x.shape):
        lo, hi = max(a, 0), min(b, n)
        if hi <= lo:
            raise ValueError(f"box {start}..{stop} lies outside the image of shape {x.shape}")
        src.append(slice(lo, hi))
        pad.append((lo - a, b - hi))
    out = x[tuple(src)]
    if any(p != (0, 0) for p in pad):
        pad += [(0, 0)] * (x.ndim - len(pad))
        out = np.pad(out, pad, mode="constant", constant_values=pad_value)
    return out


def crop_to_mask(image, mask, margin=0, *, return_box: bool = False):
    """Crop ``image`` to the bounding box of ``mask`` (same spatial shape) plus ``margin`` voxels."""
    x = np.asarray(image)
    m = np.asarray(mask)
    if m.shape != x.shape[: m.ndim]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {x.shape}")
    box = bounding_box(m, margin)
    out = x[box]
    return (out, box) if return_box else out
