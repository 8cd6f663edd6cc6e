"""NIfTI, NRRD and MetaImage (MHA/MHD) volumes through SimpleITK.

4D images (e.g. an fMRI run) keep every frame: each frame becomes its own volume sample, the
frames stored together as one stacked array, with ``frame`` and ``n_frames`` in the metadata.
A time series is many 3D observations of one subject, and the methods here work on 3D
volumes, so nothing is averaged away and nothing is dropped.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .registry import register
from .sample import LoadedSample, LoadedStack, ReadError, geometry_from_sitk

VOLUME_PATTERNS = ("*.nii", "*.nii.gz", "*.nrrd", "*.nhdr", "*.mha", "*.mhd")

_MODALITY_TOKENS = {
    "ct": "CT", "cta": "CT", "mr": "MR", "mri": "MR", "t1": "MR", "t2": "MR", "flair": "MR",
    "epi": "MR", "bold": "MR", "dwi": "MR", "mra": "MR", "pet": "PT", "us": "US",
}


def name_tokens(path) -> list[str]:
    stem = Path(path).name.lower()
    for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npz", ".npy"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    return [t for t in re.split(r"[^a-z0-9]+", stem) if t]


def guess_modality(path) -> str:
    for tok in name_tokens(path):
        if tok in _MODALITY_TOKENS:
            return _MODALITY_TOKENS[tok]
    return ""


def read_sitk_image(path):
    import SimpleITK as sitk

    path = Path(path)
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file (0 bytes)")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else "unknown error"
        raise ReadError(path, f"cannot read image (truncated or corrupt?): {detail}") from exc


@register("volume", *VOLUME_PATTERNS)
def read_volume(path, *, modality: str | None = None, **_):
    import SimpleITK as sitk

    path = Path(path)
    image = read_sitk_image(path)
    try:
        arr = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        raise ReadError(path, f"cannot read voxel data: {exc}") from exc
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    geometry = geometry_from_sitk(image)
    modality = modality or guess_modality(path)
    n_comp = image.GetNumberOfComponentsPerPixel()
    dim = image.GetDimension()
    metadata = {"pixel_type": image.GetPixelIDTypeAsString(), "format": _format(path)}
    if n_comp > 1:
        metadata["components"] = n_comp
    if dim == 4:
        n = arr.shape[0]
        metadata.update({"n_frames": int(n), "frame_spacing": float(image.GetSpacing()[3])})
        return [LoadedStack(array=arr, kind="volume", source_path=str(path),
                            keys=[(f"t{i:04d}",) for i in range(n)], modality=modality,
                            geometry=geometry, metadata=metadata,
                            row_metadata=[{"frame": i} for i in range(n)], stable_ids=False)]
    kind = "image2d" if dim == 2 else "volume"
    return [LoadedSample(array=arr, kind=kind, source_path=str(path), modality=modality,
                         geometry=geometry, metadata=metadata)]


def _format(path: Path) -> str:
    name = path.name.lower()
    if ".nii" in name:
        return "NIfTI"
    if name.endswith((".nrrd", ".nhdr")):
        return "NRRD"
    return "MetaImage"
