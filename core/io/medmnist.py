"""MedMNIST-style ``.npz``: ``{train,val,test}_images`` with ``{split}_labels``.

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
}


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
    return any(f"{s}_images" in names for s in SPLITS)


def _is_binary_mask(images: np.ndarray) -> bool:
    # Check a sample of rows: a full scan of 58k images for a yes/no is wasted time.
    probe = images[: min(len(images), 64)]
    values = np.unique(probe)
    return len(values) <= 2 and set(values.tolist()) <= {0, 1, 255}


def label_names_for(key: str, n_classes: int) -> list[str]:
    known = KNOWN_DATASETS.get(key, {}).get("labels")
    if known and len(known) >= n_classes:
        return list(known)
    return [f"class_{i}" for i in range(n_classes)]


@register("medmnist", "*.npz")
def read_medmnist(path, *, modality: str | None = None, dataset: str | None = None, **_):
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and OS errors alike
        raise ReadError(path, f"cannot open .npz ({type(exc).__name__}: {exc})") from exc
    with z:
        present = [s for s in SPLITS if f"{s}_images" in z.files]
        if not present:
            raise ReadError(path, "not a MedMNIST-style .npz: no train_images/val_images/test_images "
                                  f"arrays (has {', '.join(z.files[:8])})")
        key = dataset_key(path)
        info = KNOWN_DATASETS.get(key, {})
        name = dataset or Path(path).name[: -len(".npz")]
        label_arrays = {s: z[f"{s}_labels"] for s in present if f"{s}_labels" in z.files}
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
        names = label_names_for(key, n_classes)
        out = []
        for split in present:
            images = z[f"{split}_images"]
            if images.ndim < 3:
                raise ReadError(path, f"{split}_images has shape {images.shape}: expected (N, H, W[, C]) or (N, D, H, W)")
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
                    raise ReadError(path, f"{split}_labels has {n_lab} labels for {len(images)} "
                                          f"{split}_images: one label row per image expected")
                lab = lab.reshape(len(images), -1)
                if multilabel:
                    labels = [[names[j] for j in np.flatnonzero(row)] for row in lab]
                else:
                    labels = [[names[int(v)]] for v in lab[:, 0]]
            n = len(images)
            out.append(LoadedStack(
                array=images, kind=kind, source_path=str(path),
                keys=[(split, f"{i:05d}") for i in range(n)], dataset=name,
                modality=modality or info.get("modality", ""),
                metadata={"format": "MedMNIST npz", "medmnist": key},
                row_metadata=None, splits=split, labels=labels, stable_ids=True,
                store_name=f"{split}_images"))
        return out
