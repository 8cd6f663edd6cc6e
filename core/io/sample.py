"""What every reader returns: one sample (``LoadedSample``) or many same-shaped ones (``LoadedStack``).

Array axis convention: arrays are in numpy order as SimpleITK returns them, i.e. ``(z, y, x)``
for volumes and ``(y, x)`` or ``(y, x, 3)`` for 2D images, while ``geometry`` keeps the ITK
physical order ``(x, y, z)`` for ``spacing`` and ``origin`` and a row-major ``direction``
matrix. ``geometry["array_spacing"]`` repeats the spacing in array-axis order so numpy code
(resampling, marching cubes) can use it without reversing anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

KINDS = ("image2d", "volume", "mask", "mesh")


class ReadError(Exception):
    """A file cannot be imported; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")


@dataclass
class LoadedSample:
    """One sample read from disk, before it is written into a project."""

    array: np.ndarray | None
    kind: str
    source_path: str
    modality: str = ""
    geometry: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    split: str = ""
    labels: Sequence[str] = ()
    key: tuple = ()                      # extra id parts (series uid, frame) after the source path
    mask: np.ndarray | None = None       # associated label map on the same grid
    mask_source: str = ""
    vertices: np.ndarray | None = None   # meshes only: (V, 3) float32
    faces: np.ndarray | None = None      # meshes only: (F, 3) int64


@dataclass
class LoadedStack:
    """Many same-shaped samples from one file (a MedMNIST split, the frames of a 4D NIfTI).

    Stored as ONE ``.npy`` in the project with one row per sample, so a 58,830-image dataset is
    three files, not 58,830.
    """

    array: np.ndarray                    # (N, ...) one row per sample
    kind: str
    source_path: str
    keys: list                           # per-row id parts, e.g. ("train", "00042")
    dataset: str = ""
    modality: str = ""
    geometry: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)       # shared by every row
    row_metadata: list | None = None                   # per-row extras
    splits: Sequence[str] | str = ""                   # one split for all rows, or per row
    labels: list | None = None                         # per-row label-name lists
    stable_ids: bool = True              # ids are dataset/key (not path-hashed): same data -> same ids
    store_name: str = ""                 # file name stem inside the project

    def __len__(self) -> int:
        return len(self.array)

    def split_of(self, i: int) -> str:
        return self.splits if isinstance(self.splits, str) else str(self.splits[i])


def geometry_from_sitk(image) -> dict:
    """spacing/origin/direction of a SimpleITK image, first three axes only for 4D images."""
    dim = image.GetDimension()
    spacing = [float(s) for s in image.GetSpacing()]
    origin = [float(o) for o in image.GetOrigin()]
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    keep = min(dim, 3)
    spacing, origin, direction = spacing[:keep], origin[:keep], direction[:keep, :keep]
    return {
        "spacing": spacing,
        "origin": origin,
        "direction": direction.ravel().tolist(),
        "array_spacing": spacing[::-1],
    }
