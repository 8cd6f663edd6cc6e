"""Resampling to a target voxel spacing with SimpleITK (the inner-ear paper used 0.125 mm).

Images are interpolated linearly (as float32); label maps with nearest neighbour so label ids
survive. The resampled grid covers the same physical box as the input (voxel edges, not voxel
centres, stay in place: the origin moves by half the change of voxel size) with the same
direction, so an image and its label map resampled separately stay aligned.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["resample_image", "resample_array", "resampled_size"]


def _per_axis(value, n: int, what: str) -> tuple[float, ...]:
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 \
        else np.asarray(value, dtype=np.float64)
    if v.shape != (n,):
        raise ValueError(f"{what} must be a number or {n} numbers, got {value!r}")
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return tuple(float(x) for x in v)


def resampled_size(size: Sequence[int], spacing, target_spacing) -> tuple[int, ...]:
    """Grid size that covers the same extent at the target spacing (at least 1 per axis)."""
    spacing = _per_axis(spacing, len(size), "spacing")
    target = _per_axis(target_spacing, len(size), "target spacing")
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(size, spacing, target))


def resample_image(image, target_spacing=0.125, *, is_label: bool = False, default_value=0.0):
    """Resample a ``SimpleITK.Image`` to ``target_spacing`` (a number or one per ITK axis, x first).

    Linear interpolation to float32 for images; nearest neighbour, same pixel type, for label
    maps (``is_label=True``). Voxels outside the input get ``default_value``.
    """
    import SimpleITK as sitk

    if not isinstance(image, sitk.Image):
        raise TypeError(f"resample_image takes a SimpleITK.Image, got {type(image).__name__}; "
                        "use resample_array for numpy arrays")
    dim = image.GetDimension()
    target = _per_axis(target_spacing, dim, "target spacing")
    size = resampled_size(image.GetSize(), image.GetSpacing(), target)
    if not is_label and image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing(target)
    f.SetSize([int(s) for s in size])
    # Keep the outer edge of the first voxel where it was: the first centre moves by (t - s) / 2.
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    shift = direction @ ((np.asarray(target) - np.asarray(image.GetSpacing())) / 2.0)
    f.SetOutputOrigin(tuple(float(o) for o in np.asarray(image.GetOrigin()) + shift))
    f.SetOutputDirection(image.GetDirection())
    f.SetTransform(sitk.Transform())
    f.SetDefaultPixelValue(float(default_value))
    f.SetInterpolator(sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear)
    f.SetOutputPixelType(image.GetPixelID())
    return f.Execute(image)


def resample_array(array, spacing, target_spacing=0.125, *, is_label: bool = False,
                   default_value=0.0) -> tuple[np.ndarray, tuple[float, ...]]:
    """Numpy version: ``array`` with ``spacing`` in array-axis order -> ``(array, new spacing)``.

    The new spacing is exactly ``target_spacing`` (array-axis order as well).
    """
    import SimpleITK as sitk

    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise ValueError(f"resample_array takes a 2-D or 3-D array, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    spacing = _per_axis(spacing, a.ndim, "spacing")
    target = _per_axis(target_spacing, a.ndim, "target spacing")
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing[::-1])  # ITK order is the reverse of numpy's
    out = resample_image(img, target[::-1], is_label=is_label, default_value=default_value)
    res = sitk.GetArrayFromImage(out)
    if is_label and np.asarray(array).dtype == bool:
        res = res.astype(bool)
    return res, target
