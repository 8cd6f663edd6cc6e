"""MONAI-style callables around the preprocessing functions, for ``monai.transforms.Compose``
or any list of callables applied in order. Each holds only its settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .intensity import percentile_normalise, zscore
from .resample import resample_array, resample_image
from .resize import crop_box, crop_to_mask, resize

__all__ = ["ResampleToSpacing", "PercentileNormalise", "ZScore", "Resize", "CropBox", "CropToMask",
           "Compose"]


@dataclass
class ResampleToSpacing:
    """``SimpleITK.Image -> Image`` or ``(array, spacing) -> (array, spacing)`` (array-axis order)."""

    target_spacing: float | Sequence[float] = 0.125
    is_label: bool = False

    def __call__(self, data):
        if isinstance(data, tuple):
            array, spacing = data
            return resample_array(array, spacing, self.target_spacing, is_label=self.is_label)
        return resample_image(data, self.target_spacing, is_label=self.is_label)


@dataclass
class PercentileNormalise:
    lower: float = 5.0
    upper: float = 95.0
    clip: bool = False

    def __call__(self, image):
        return percentile_normalise(image, self.lower, self.upper, clip=self.clip)


@dataclass
class ZScore:
    def __call__(self, image):
        return zscore(image)


@dataclass
class Resize:
    shape: Sequence[int]
    is_label: bool = False

    def __call__(self, image):
        return resize(image, self.shape, is_label=self.is_label)


@dataclass
class CropBox:
    start: Sequence[int]
    stop: Sequence[int]
    pad_value: float = 0

    def __call__(self, image):
        return crop_box(image, self.start, self.stop, pad_value=self.pad_value)


@dataclass
class CropToMask:
    """``(image, mask) -> (cropped image, cropped mask)`` around the mask's box plus ``margin``."""

    margin: int | Sequence[int] = 0

    def __call__(self, data):
        image, mask = data
        out, box = crop_to_mask(image, mask, self.margin, return_box=True)
        return out, mask[box]


class Compose:
    """Apply callables in order (a dependency-free stand-in for ``monai.transforms.Compose``)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, data):
        for t in self.transforms:
            data = t(data)
        return data
