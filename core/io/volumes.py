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


def _nifti_header(head: bytes):
    """(data offset, bytes of voxel data) from a NIfTI-1 or NIfTI-2 header, or None."""
    import struct

    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348 and len(head) >= 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    n = 1
    for d in dims[1 : ndim + 1]:
        n *= max(int(d), 1)
    return max(offset, 352 if size == 348 else 544), n * bitpix // 8


def check_nifti_complete(path: Path) -> None:
    """ITK reads a truncated NIfTI without complaint (the missing voxels become zeros), so
    compare the bytes present with what the header promises, and decompress .gz to the end."""
    import gzip
    import zlib

    gz = path.name.lower().endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as fh:
                head = fh.read(544)
                total = len(head)
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
        else:
            with open(path, "rb") as fh:
                head = fh.read(544)
            total = path.stat().st_size
    except (EOFError, OSError, zlib.error) as exc:
        raise ReadError(path, f"cannot read image (truncated or corrupt?): {exc}") from exc
    info = _nifti_header(head)
    if info is None:
        raise ReadError(path, "cannot read image (truncated or corrupt?): not a NIfTI header")
    offset, nbytes = info
    if total < offset + nbytes:
        raise ReadError(path, f"cannot read image (truncated or corrupt?): the header promises "
                              f"{nbytes} bytes of voxels after byte {offset}, the file has "
                              f"{max(total - offset, 0)}")


def read_sitk_image(path):
    import SimpleITK as sitk

    path = Path(path)
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file (0 bytes)")
    if ".nii" in path.name.lower():
        check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ReadError(path, f"cannot read image (truncated or corrupt?): {itk_reason(exc)}") from exc


def itk_reason(exc: Exception) -> str:
    """The informative line of an ITK exception, without source paths and object addresses."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "ERROR:" in ln:
            rest = [re.sub(r"^.*?ERROR:\s*\w+\(0x[0-9a-f]+\):\s*", "", ln)] + lines[i + 1 : i + 3]
            # ITK appends a stale errno ("No such file or directory") to files that do exist.
            rest = [r for r in rest if not r.startswith("Reason: No such file")]
            return " ".join(rest)[:300]
    return lines[-1] if lines else "unknown error"


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
