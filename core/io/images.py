"""2D PNG/JPEG/TIFF/BMP frames (grayscale stays 2D, colour becomes (y, x, 3) RGB)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import register
from .sample import LoadedSample, ReadError


@register("image2d", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp")
def read_image(path, *, modality: str | None = None, **_):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            im.load()
            if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im)
            else:  # RGB, RGBA, P (palette), CMYK, LA ...: to RGB, alpha dropped
                arr = np.asarray(im.convert("RGB"))
                mode = f"{mode}->RGB" if mode != "RGB" else mode
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ReadError(path, f"cannot decode image ({exc})") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2 and arr.shape[0] > 1 and arr.shape[1] > 1 or arr.ndim == 3:
        meta = {"mode": mode, "format": path.suffix.lower().lstrip(".")}
        if arr.ndim == 3:
            meta["color"] = "RGB"
        return [LoadedSample(array=arr, kind="image2d", source_path=str(path),
                             modality=modality or "", geometry={},
                             metadata=meta)]
    raise ReadError(path, f"image has degenerate shape {arr.shape}")
