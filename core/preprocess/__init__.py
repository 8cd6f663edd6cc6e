"""Preprocessing: resampling, intensity normalisation, resize/crop, mask -> mesh -> points,
point augmentation and a UNet segmenter (imported lazily: it needs torch and MONAI)."""
from .augment import augment_points, augment_points_torch
from .intensity import percentile_normalise, zscore
from .resample import resample_array, resample_image
from .resize import bounding_box, crop_box, crop_to_mask, resize
from .shapes import (compute_points, largest_component, mask_to_mesh, mask_to_points,
                     normalise_points, sample_surface)

__all__ = [
    "augment_points", "augment_points_torch", "compute_points", "largest_component",
    "mask_to_mesh", "mask_to_points", "normalise_points", "sample_surface",
    "percentile_normalise", "zscore", "resample_array", "resample_image",
    "bounding_box", "crop_box", "crop_to_mask", "resize",
]
