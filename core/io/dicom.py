"""DICOM: series folders (SimpleITK/GDCM) and single files, incl. ultrasound and multi-frame.

SimpleITK reads most files (it applies RescaleSlope/Intercept and converts palette and YBR
colour to RGB); pydicom is the fallback for files GDCM cannot decode. Key tags are read with
pydicom (header only); the importer keeps the identifying ones only when asked (``deid``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .deid import uid_token
from .registry import register
from .sample import LoadedSample, ReadError, geometry_from_sitk

# Tags worth keeping: what the app or a user filters on (kept by default) and who/when
# (identifying: kept only with ``--keep-identifiers``, see ``deid.IDENTIFYING_TAGS``).
KEY_TAGS = (
    "Modality", "SeriesNumber", "InstanceNumber", "BodyPartExamined", "Manufacturer",
    "ManufacturerModelName", "PhotometricInterpretation", "NumberOfFrames", "Rows", "Columns",
    "BitsStored", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth",
    "PatientID", "PatientName", "PatientSex", "PatientAge", "PatientBirthDate",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
    "SeriesDescription", "InstitutionName", "ReferringPhysicianName",
)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom(path) -> bool:
    """A DICOM file by suffix, or by the 'DICM' magic at byte 128 for suffix-less files."""
    p = Path(path)
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    if p.suffix:
        return False
    try:
        with open(p, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_tags(path) -> dict:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=False)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise ReadError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    tags = {}
    for name in KEY_TAGS:
        if name in ds:
            tags[name] = _plain(ds.data_element(name).value)
    return tags


def _plain(value):
    """pydicom values (MultiValue, DSfloat, PersonName) as JSON-able Python values."""
    from pydicom.multival import MultiValue

    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ")
    if isinstance(value, (int, float, str)):
        return type(value)(value) if not isinstance(value, str) else str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _kind_and_array(arr: np.ndarray, n_components: int) -> tuple[str, np.ndarray]:
    """Squeeze a single slice to 2D; several frames/slices stay a volume."""
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    spatial = arr.shape[:-1] if n_components > 1 else arr.shape
    if len(spatial) == 3 and spatial[0] == 1:
        return "image2d", arr[0]
    if len(spatial) == 2:
        return "image2d", arr
    return "volume", arr


@register("dicom", "*.dcm", "*.dicom", "*.ima")
def read_dicom_file(path, *, modality: str | None = None, **_):
    """One DICOM file: a slice (image2d), a multi-frame image (volume), RGB/palette/YBR ultrasound."""
    import SimpleITK as sitk

    path = Path(path)
    tags = read_tags(path)
    photometric = str(tags.get("PhotometricInterpretation", ""))
    reader_used = "SimpleITK"
    try:
        image = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(image)
        n_comp = image.GetNumberOfComponentsPerPixel()
        geometry = geometry_from_sitk(image)
    except RuntimeError as exc:
        arr, n_comp = _read_pixels_pydicom(path, photometric, sitk_error=exc)
        geometry = _geometry_from_tags(tags, arr.ndim - (1 if n_comp > 1 else 0))
        reader_used = "pydicom"
    if reader_used == "SimpleITK" and np.allclose(geometry.get("spacing", [1.0]), 1.0):
        geometry.update(_enhanced_spacing(path, arr.ndim - (1 if n_comp > 1 else 0)))
    kind, arr = _kind_and_array(arr, n_comp)
    if kind == "image2d" and len(geometry.get("spacing", [])) == 3:
        # A slice keeps its 3D place in the patient (origin, direction); spacing is in-plane.
        geometry["slice_thickness"] = geometry["spacing"][2]
        geometry["spacing"] = geometry["spacing"][:2]
        geometry["array_spacing"] = geometry["spacing"][::-1]
    metadata = dict(tags)
    metadata["reader"] = reader_used
    if n_comp > 1:
        metadata["color"] = "RGB"
    return [LoadedSample(array=arr, kind=kind, source_path=str(path),
                         modality=modality or str(tags.get("Modality", "")), geometry=geometry,
                         metadata=metadata, key=())]


def _read_pixels_pydicom(path, photometric: str, *, sitk_error) -> tuple[np.ndarray, int]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise ReadError(path, f"cannot decode DICOM pixel data (SimpleITK: {sitk_error}; "
                              f"pydicom: {type(exc).__name__}: {exc})") from exc
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    elif photometric.startswith("YBR") and int(pydicom.__version__.split(".")[0]) < 3:
        # pydicom >= 3 already returns RGB for YBR data (pixel_array's as_rgb=True); 2.x does not.
        from pydicom.pixel_data_handlers.util import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    n_comp = 3 if arr.shape[-1] == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2") else 1
    if n_comp == 1 and ("RescaleSlope" in ds or "RescaleIntercept" in ds):
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        arr = arr.astype(np.float32) * slope + intercept
    return np.asarray(arr), n_comp


def _enhanced_spacing(path, ndim: int) -> dict:
    """Pixel spacing of an enhanced (multi-frame) object, kept in its functional groups where
    GDCM does not look."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        pm = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        row, col = (float(v) for v in pm.PixelSpacing)
    except Exception:  # noqa: BLE001 - no functional groups: keep what SimpleITK found
        return {}
    spacing = [col, row]
    if ndim == 3:
        spacing.append(float(getattr(pm, "SpacingBetweenSlices", None) or getattr(pm, "SliceThickness", 1.0) or 1.0))
    return {"spacing": spacing, "array_spacing": spacing[::-1]}


def _geometry_from_tags(tags: dict, ndim: int) -> dict:
    sp = tags.get("PixelSpacing")
    if not sp or len(sp) != 2:
        return {}
    spacing = [float(sp[1]), float(sp[0])]  # PixelSpacing is (row, column) = (y, x)
    if ndim == 3:
        spacing.append(float(tags.get("SliceThickness") or 1.0))
    return {"spacing": spacing, "array_spacing": spacing[::-1]}


def series_in_folder(folder) -> list[tuple[str, list[str]]]:
    """(SeriesInstanceUID, ordered files) for every series GDCM finds directly in ``folder``."""
    import SimpleITK as sitk

    out = []
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)   # "No Series were found" is no news
    try:
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
            out.append((uid, files))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
    return out


def _slice_sizes(files: list[str]) -> list[tuple[int, int] | None]:
    import pydicom

    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["Rows", "Columns"])
            out.append((int(ds.Rows), int(ds.Columns)))
        except Exception:  # noqa: BLE001 - SimpleITK reports unreadable files below
            out.append(None)
    return out


def check_slice_sizes(folder, files: list[str]) -> None:
    """Every slice of a series must have the same rows x columns; name the odd ones."""
    from collections import Counter

    sizes = _slice_sizes(files)
    counts = Counter(s for s in sizes if s is not None)
    if len(counts) <= 1:
        return
    (common, n_common), = counts.most_common(1)
    odd = [(Path(f).name, s) for f, s in zip(files, sizes) if s is not None and s != common]
    shown = ", ".join(f"{name} is {r}x{c}" for name, (r, c) in odd[:5])
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    raise ReadError(folder, f"slices of different sizes in one series: {shown}{more}, while "
                            f"the other {n_common} slices are {common[0]}x{common[1]}; move the "
                            "odd slice(s) out of the folder (or import them on their own)")


def read_dicom_series(folder, uid: str, files: list[str], *, modality: str | None = None):
    """A multi-file series as one volume, slices ordered by GDCM along the slice normal."""
    import SimpleITK as sitk

    check_slice_sizes(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ReadError(folder, f"a series of {len(files)} files (first {Path(files[0]).name}): "
                                "SimpleITK cannot read them as one volume "
                                f"({str(exc).strip().splitlines()[-1]})") from exc
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    tags = read_tags(files[0])
    tags.pop("SOPInstanceUID", None)
    tags.pop("InstanceNumber", None)
    metadata = {**tags, "n_files": len(files), "reader": "SimpleITK series"}
    n_comp = image.GetNumberOfComponentsPerPixel()
    if n_comp > 1:
        metadata["color"] = "RGB"
    return [LoadedSample(array=arr, kind="volume", source_path=str(folder),
                         modality=modality or str(tags.get("Modality", "")),
                         geometry=geometry_from_sitk(image), metadata=metadata,
                         key=(uid_token(uid),))]
