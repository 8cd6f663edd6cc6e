"""Multi-label 2D data: axial slices of the TotalSegmentator example CT tagged with their organs.

The ultrasound paper tags every image with the organs it shows (liver, kidney, gallbladder,
pancreas, spleen, bladder) or ``other`` when it shows none of them. The nearest real data here
is the TotalSegmentator example CT: its label map (``example_seg.nii.gz``) covers 30 axial
slices (``example_ct_sm.nii.gz`` = ``example_ct.nii.gz`` slices 82..111 along the array's z),
so each of those slices is tagged with the organs present in its slice of the label map. The
other 82 slices of the full CT have no label map: they are returned unlabelled (all-zero
label rows), which is what semi-supervised training consumes as its unlabelled set.

Caveats, kept in the data rather than hidden: one subject only; the label maps are
TotalSegmentator model outputs kept as regression references, not manual ground truth; no
slice of the labelled block reaches the urinary bladder, so that class has no positive here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .dataset import SampleSet

#: The paper's C + 1 targets, in its order; ``other`` = none of the six organs in the slice.
ORGANS = ("liver", "kidney", "gallbladder", "pancreas", "spleen", "urinary_bladder", "other")
#: TotalSegmentator ``total`` class names that make up each organ tag.
ORGAN_PARTS = {
    "liver": ("liver",),
    "kidney": ("kidney_left", "kidney_right"),
    "gallbladder": ("gallbladder",),
    "pancreas": ("pancreas",),
    "spleen": ("spleen",),
    "urinary_bladder": ("urinary_bladder",),
}
#: Where the labelled block starts in the full CT (PROVENANCE.md: ct_sm = ct[:, :, 82:112]).
LABELLED_OFFSET = 82


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (TotalSegmentator example files expected there)")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (z, y, x)


def slice_organ_tags(seg: np.ndarray, class_map: dict, *, min_pixels: int = 1) -> np.ndarray:
    """Multi-hot (Z x 7) over ``ORGANS`` for a (z, y, x) label map; ``class_map``: id -> name.

    An organ is present in a slice when at least ``min_pixels`` of its pixels are there;
    ``other`` is set exactly when none of the six organs is.
    """
    name_to_id = {v: int(k) for k, v in class_map.items()}
    tags = np.zeros((seg.shape[0], len(ORGANS)), dtype=np.float32)
    for j, organ in enumerate(ORGANS[:-1]):
        ids = [name_to_id[p] for p in ORGAN_PARTS[organ] if p in name_to_id]
        if not ids:
            raise ValueError(f"label map names lack {ORGAN_PARTS[organ]}")
        counts = np.isin(seg, ids).reshape(seg.shape[0], -1).sum(1)
        tags[:, j] = counts >= min_pixels
    tags[:, -1] = tags[:, :-1].sum(1) == 0
    return tags


def window_ct(hu: np.ndarray, window: tuple[float, float] = (-160.0, 240.0)) -> np.ndarray:
    """HU -> [0, 1] through an abdominal soft-tissue window (level 40, width 400)."""
    lo, hi = window
    return np.clip((hu.astype(np.float32) - lo) / (hi - lo), 0, 1)


def _resize(x: np.ndarray, size) -> np.ndarray:
    if size is None:
        return x
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[:, 0].numpy()


def totalseg_slices(root, *, size: tuple[int, int] | None = (64, 64), include_unlabelled: bool = True,
                    min_pixels: int = 1, val_every: int = 5,
                    window: tuple[float, float] = (-160.0, 240.0)) -> SampleSet:
    """The TotalSegmentator example CT as a multi-label ``SampleSet`` of axial slices.

    ``root``: the ``totalseg_example`` folder. Images are windowed to [0, 1] and resized to
    ``size`` (None keeps 101 x 122). Labelled slices: every ``val_every``-th one goes to
    ``val`` (for early stopping and thresholds), the rest to ``train``; unlabelled slices are
    ``train`` with all-zero label rows. Ids are ``totalseg-ct-zNNN`` (full-CT slice index).
    """
    root = Path(root)
    ct = _read(root / "example_ct.nii.gz")
    seg = _read(root / "example_seg.nii.gz")
    sm = _read(root / "example_ct_sm.nii.gz")
    block = ct[LABELLED_OFFSET:LABELLED_OFFSET + seg.shape[0]]
    if seg.shape != sm.shape or block.shape != sm.shape or not np.array_equal(block, sm):
        raise ValueError(f"{root}: example_ct slices {LABELLED_OFFSET}.. do not match example_ct_sm "
                         "(the label map's grid); the files are not the expected ones")
    names_file = root / "labels.json"
    if not names_file.exists():
        raise FileNotFoundError(f"{names_file}: not found (class id -> name map)")
    class_map = json.loads(names_file.read_text())["total"]
    tags = slice_organ_tags(seg, class_map, min_pixels=min_pixels)

    z_all = np.arange(ct.shape[0])
    labelled = (z_all >= LABELLED_OFFSET) & (z_all < LABELLED_OFFSET + seg.shape[0])
    keep = z_all if include_unlabelled else z_all[labelled]
    x = _resize(window_ct(ct[keep], window), size)
    y = np.zeros((len(keep), len(ORGANS)), dtype=np.float32)
    split = np.array(["train"] * len(keep), dtype=object)
    for i, z in enumerate(keep):
        if labelled[z]:
            k = z - LABELLED_OFFSET
            y[i] = tags[k]
            if val_every and k % val_every == val_every - 1:
                split[i] = "val"
    ids = np.array([f"totalseg-ct-z{z:03d}" for z in keep])
    return SampleSet(ids=ids, x=x.astype(np.float32), y=y, label_names=list(ORGANS),
                     split=split.astype(str))


def add_to_project(project, data: SampleSet, *, dataset: str = "totalseg-slices", author: str = "import") -> int:
    """Write the slices (one stacked .npy) and their organ tags into a project; returns the count."""
    from .project import SampleRecord

    rel = f"samples/{dataset}/images.npy"
    project.save_sample_array(rel, np.asarray(data.x, dtype=np.float32))
    records = [SampleRecord(id=str(i), dataset=dataset, source_path="totalseg_example/example_ct.nii.gz",
                            modality="CT", kind="image2d", split=str(s), shape=tuple(data.x.shape[1:]),
                            geometry={"spacing": [3.0, 3.0]}, metadata={"slice": int(str(i)[-3:])},
                            data_file=rel, data_index=k,
                            labels=[n for n, v in zip(data.label_names, data.y[k]) if v > 0])
               for k, (i, s) in enumerate(zip(data.ids, data.split))]
    return project.add_samples(records, author=author)
