"""MedMNIST-style ``.npz``: ``{train,val,test}_images`` with ``{split}_labels``, or the
``X_{split}`` / ``y_{split}`` layout (e.g. the voxelised ModelNet10 copy in shared/data).

An optional 1-D string array ``class_names`` (or ``label_names``) in the file names the classes
(index i = class i); it wins over the names of a known dataset, so a custom set never becomes
``class_0``... when its file says what its classes are.

Each split becomes one stacked array in the project (OrganAMNIST's 58,830 images are three
files), its labels stay with the split, and ids are ``<dataset>/<split>/<index:05d>`` so a
re-import of the same file yields the same ids.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .registry import register
from .sample import LoadedStack, ReadError

SPLITS = ("train", "val", "test")

# Class names and modality of the MedMNIST sets we know (medmnist INFO / the PROVENANCE files).
KNOWN_DATASETS: dict[str, dict] = {
    "organamnist": {"modality": "CT", "labels": [
        "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
        "lung-left", "lung-right", "pancreas", "spleen"]},
    "organcmnist": {"modality": "CT", "labels": [
        "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
        "lung-left", "lung-right", "pancreas", "spleen"]},
    "organsmnist": {"modality": "CT", "labels": [
        "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
        "lung-left", "lung-right", "pancreas", "spleen"]},
    "breastmnist": {"modality": "US", "labels": ["malignant", "normal_or_benign"]},
    "pneumoniamnist": {"modality": "XR", "labels": ["normal", "pneumonia"]},
    "adrenalmnist3d": {"modality": "CT", "kind": "mask", "labels": ["normal", "hyperplasia"]},
    "vesselmnist3d": {"modality": "MR", "kind": "mask", "labels": ["vessel", "aneurysm"]},
    "nodulemnist3d": {"modality": "CT", "labels": ["benign", "malignant"]},
    # Not medical: voxelised CAD models (shared/data/modelnet10/PROVENANCE.md, class order of the file)
    "modelnet10": {"modality": "CAD", "kind": "mask", "labels": [
        "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
        "toilet"]},
}

# (images, labels) array names per split, in the order they are tried.
LAYOUTS = (("{}_images", "{}_labels"), ("X_{}", "y_{}"))
NAME_ARRAYS = ("class_names", "label_names")


def npz_layout(names) -> tuple[str, str] | None:
    """The (images, labels) name patterns of the first layout with an images array, or None."""
    names = set(names)
    for images, labels in LAYOUTS:
        if any(images.format(s) in names for s in SPLITS):
            return images, labels
    return None


def dataset_key(path) -> str:
    """``adrenalmnist3d_64.npz`` -> ``adrenalmnist3d`` (the size suffix names no new dataset)."""
    stem = Path(path).name.lower()[: -len(".npz")]
    base, _, size = stem.rpartition("_")
    return base if base and size.isdigit() else stem


def looks_like_medmnist(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError):
        return False
    return npz_layout(names) is not None


def _is_binary_mask(images: np.ndarray) -> bool:
    # Check a sample of rows: a full scan of 58k images for a yes/no is wasted time.
    probe = images[: min(len(images), 64)]
    values = np.unique(probe)
    return len(values) <= 2 and set(values.tolist()) <= {0, 1, 255}


def label_names_for(key: str, n_classes: int, file_names: list[str] | None = None) -> list[str]:
    """Class names: the file's own ``class_names``, else a known dataset's, else ``class_i``."""
    if file_names and len(file_names) >= n_classes:
        return list(file_names)
    known = KNOWN_DATASETS.get(key, {}).get("labels")
    if known and len(known) >= n_classes:
        return list(known)
    return [f"class_{i}" for i in range(n_classes)]


def _file_class_names(z, path) -> list[str] | None:
    key = next((k for k in NAME_ARRAYS if k in z.files), None)
    if key is None:
        return None
    try:
        arr = z[key]
    except ValueError as exc:  # an object array needs pickle, which is never allowed
        raise ReadError(path, f"{key} cannot be read without pickle ({exc}); save it as a string "
                              "array, e.g. np.array(names, dtype=str)") from exc
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise ReadError(path, f"{key} must be a 1-D string array, got shape {arr.shape} dtype {arr.dtype}")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()]


def _as_small_mask(images: np.ndarray) -> np.ndarray:
    """A binary mask stack held in a wide integer type (ModelNet10: int32 0/1) as uint8: a
    quarter of the disk, same values. Anything not 0/1 (or 0/255) is left as it is."""
    if images.dtype.kind not in "iu" or images.dtype.itemsize == 1:
        return images
    lo, hi = images.min(initial=0), images.max(initial=0)
    return images.astype(np.uint8) if lo >= 0 and hi <= 255 and (hi <= 1 or hi == 255) else images


@register("medmnist", "*.npz")
def read_medmnist(path, *, modality: str | None = None, dataset: str | None = None, **_):
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and OS errors alike
        raise ReadError(path, f"cannot open .npz ({type(exc).__name__}: {exc})") from exc
    with z:
        layout = npz_layout(z.files)
        if layout is None:
            raise ReadError(path, "not a MedMNIST-style .npz: no train_images/val_images/test_images "
                                  f"(or X_train/X_val/X_test) arrays (has {', '.join(z.files[:8])})")
        img_key, lab_key = layout
        present = [s for s in SPLITS if img_key.format(s) in z.files]
        key = dataset_key(path)
        info = KNOWN_DATASETS.get(key, {})
        name = dataset or Path(path).name[: -len(".npz")]
        label_arrays = {s: z[lab_key.format(s)] for s in present if lab_key.format(s) in z.files}
        n_classes = 0
        multilabel = False
        for lab in label_arrays.values():
            if lab.ndim == 0:
                continue  # reported with its split below
            lab2 = lab.reshape(len(lab), -1)
            if lab2.shape[1] > 1:
                multilabel = True
                n_classes = max(n_classes, lab2.shape[1])
            elif len(lab2):
                n_classes = max(n_classes, int(lab2.max()) + 1)
        file_names = _file_class_names(z, path)
        if file_names is not None and not multilabel and len(file_names) < n_classes:
            raise ReadError(path, f"{len(file_names)} class names for labels up to {n_classes - 1}: "
                                  "one name per class index expected")
        names = label_names_for(key, n_classes, file_names)
        out = []
        for split in present:
            images = z[img_key.format(split)]
            if images.ndim < 3:
                raise ReadError(path, f"{img_key.format(split)} has shape {images.shape}: expected (N, H, W[, C]) or (N, D, H, W)")
            is_3d = images.ndim == 4 and images.shape[-1] not in (3, 4) or images.ndim == 5
            if info.get("kind"):
                kind = info["kind"]
            elif is_3d:
                kind = "mask" if _is_binary_mask(images) else "volume"
            else:
                kind = "image2d"
            labels = None
            if split in label_arrays:
                lab = label_arrays[split]
                if lab.ndim == 0 or len(lab) != len(images):
                    n_lab = 1 if lab.ndim == 0 else len(lab)
                    raise ReadError(path, f"{lab_key.format(split)} has {n_lab} labels for {len(images)} "
                                          f"{img_key.format(split)}: one label row per image expected")
                lab = lab.reshape(len(images), -1)
                if multilabel:
                    labels = [[names[j] for j in np.flatnonzero(row)] for row in lab]
                else:
                    labels = [[names[int(v)]] for v in lab[:, 0]]
            n = len(images)
            row_meta = None
            if kind == "mask":
                images = _as_small_mask(images)
                # An empty grid imports (it is a sample of the set) but says why it will get no
                # points; compute_points skips it with "empty (no foreground voxel)".
                empty = ~images.reshape(n, -1).any(axis=1)
                if empty.any():
                    row_meta = [{"empty_mask": True} if e else {} for e in empty]
            out.append(LoadedStack(
                array=images, kind=kind, source_path=str(path),
                keys=[(split, f"{i:05d}") for i in range(n)], dataset=name,
                modality=modality or info.get("modality", ""),
                metadata={"format": "MedMNIST npz" if img_key == "{}_images" else "X/y npz",
                          "medmnist": key},
                row_metadata=row_meta, splits=split, labels=labels, stable_ids=True,
                store_name=f"{split}_images"))
        return out
