"""Two augmentation schemes for grayscale 2D medical images, batched on the tensor's device.

PICA compares each image's cluster probabilities under two schemes (the ultrasound paper's
(~) and (^)); FixMatch uses the same pair as its weak and strong branches:

* ``weak_augment``: a mild random resized crop (area 85-100 %) and a shift of up to 12.5 % —
  PICA's "reduced" transform (resize + random crop) and FixMatch's weak flip-and-translate.
* ``strong_augment``: random resized crop (area 40-100 %, aspect 3/4-4/3), rotation
  (+-15 degrees), brightness/contrast/gamma jitter, Gaussian blur or noise, and a cutout square —
  the grayscale counterpart of PICA's crop + colour jitter and FixMatch's RandAugment + cutout.

No flips by default: left/right is a class in OrganAMNIST (kidney-left vs kidney-right, ...)
and in abdominal ultrasound, so a mirrored image would be another class. Colour jitter is
replaced by intensity transforms since the images have one channel.

Input: float tensor (B, C, H, W) with values in [0, 1]; output: same shape, clamped to [0, 1].
Every random draw comes from ``generator`` (a CPU ``torch.Generator``) so a seeded run is
reproducible on CPU and GPU alike.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_resized_affine", "intensity_jitter", "cutout", "weak_augment", "strong_augment",
           "AUGMENTATIONS", "to_unit_tensor", "resize_images"]


def _uniform(n, lo, hi, generator):
    return torch.rand(n, generator=generator, dtype=torch.float64) * (hi - lo) + lo


def _check(x):
    if x.ndim != 4:
        raise ValueError(f"augmentations expect a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError("augmentations expect float images in [0, 1]; convert uint8 with x / 255")


def random_resized_affine(x, *, scale=(0.85, 1.0), ratio=(1.0, 1.0), rotate: float = 0.0,
                          shift: float = 0.0, flip: bool = False, generator=None):
    """Random resized crop (area fraction in ``scale``, aspect in ``ratio``) + rotation (degrees)
    + extra shift (fraction of the size), as one affine resampling per image (bilinear, border
    padding so no black frame appears)."""
    _check(x)
    b = x.shape[0]
    area = _uniform(b, *scale, generator)
    logr = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(logr)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    # crop centre anywhere the crop stays inside the image, plus the extra shift
    cx = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * (1 - h)
    cx = cx + _uniform(b, -2 * shift, 2 * shift, generator)
    cy = cy + _uniform(b, -2 * shift, 2 * shift, generator)
    angle = _uniform(b, -rotate, rotate, generator) * math.pi / 180
    sx = w * torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0).double() if flip else w
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin * h, cx], 1),
                         torch.stack([sin * sx, cos * h, cy], 1)], 1)
    theta = theta.to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False).to(x.dtype)


def intensity_jitter(x, *, brightness=0.4, contrast=0.4, gamma=0.4, generator=None):
    """Brightness (add), contrast (scale about the image mean) and gamma (x ** exp(+-gamma))."""
    _check(x)
    b = x.shape[0]
    shape = (b,) + (1,) * (x.ndim - 1)
    dev = x.device
    bright = _uniform(b, -brightness / 2, brightness / 2, generator).float().to(dev).view(shape)
    contr = _uniform(b, 1 - contrast, 1 + contrast, generator).float().to(dev).view(shape)
    gam = torch.exp(_uniform(b, -gamma, gamma, generator)).float().to(dev).view(shape)
    x = x.clamp(0, 1) ** gam
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return ((x - mean) * contr + mean + bright).clamp(0, 1)


def _blur_or_noise(x, *, blur_p=0.5, noise=0.05, generator=None):
    b = x.shape[0]
    shape = (b,) + (1,) * (x.ndim - 1)
    use_blur = (torch.rand(b, generator=generator) < blur_p).to(x.device).view(shape)
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device)
    k2 = (k[:, None] * k[None, :]) / 16
    c = x.shape[1]
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2.expand(c, 1, 3, 3).to(x.dtype), groups=c)
    sigma = _uniform(b, 0, noise, generator).float().to(x.device).view(shape)
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return torch.where(use_blur, blurred, x + sigma * eps).clamp(0, 1)


def cutout(x, *, size=0.25, fill=0.5, generator=None):
    """One square of side ``size`` * min(H, W) per image set to ``fill`` (FixMatch's cutout)."""
    _check(x)
    b, _, hgt, wid = x.shape
    side = max(1, int(round(size * min(hgt, wid))))
    y0 = torch.randint(-side // 2, hgt - side // 2, (b,), generator=generator)
    x0 = torch.randint(-side // 2, wid - side // 2, (b,), generator=generator)
    rows = torch.arange(hgt)[None, :]
    cols = torch.arange(wid)[None, :]
    my = (rows >= y0[:, None]) & (rows < (y0 + side)[:, None])
    mx = (cols >= x0[:, None]) & (cols < (x0 + side)[:, None])
    mask = (my[:, :, None] & mx[:, None, :])[:, None].to(x.device)
    return torch.where(mask, torch.full_like(x, fill), x)


def weak_augment(x, *, generator=None, scale=(0.85, 1.0), shift=0.125, flip=False):
    """Scheme (~): mild crop-and-shift only; intensities untouched."""
    return random_resized_affine(x, scale=scale, shift=shift, flip=flip, generator=generator).clamp(0, 1)


def strong_augment(x, *, generator=None, scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3), rotate=15.0,
                   brightness=0.4, contrast=0.4, gamma=0.4, blur_p=0.5, noise=0.05,
                   cutout_size=0.25, flip=False):
    """Scheme (^): geometric + intensity + blur/noise + cutout."""
    x = random_resized_affine(x, scale=scale, ratio=ratio, rotate=rotate, flip=flip, generator=generator)
    x = intensity_jitter(x, brightness=brightness, contrast=contrast, gamma=gamma, generator=generator)
    x = _blur_or_noise(x, blur_p=blur_p, noise=noise, generator=generator)
    if cutout_size > 0:
        x = cutout(x, size=cutout_size, generator=generator)
    return x


AUGMENTATIONS = {"weak": weak_augment, "strong": strong_augment}


def to_unit_tensor(x, device=None):
    """Images as a float (B, C, H, W) tensor in [0, 1] for the 2D trunks.

    uint8 (MedMNIST) is divided by 255; other integer or float images (CT in HU, ...) are
    min-max scaled per image. (B, H, W) gains a channel axis; (B, H, W, 3|4) colour images
    become grayscale (the mean of the colour channels).
    """
    import numpy as np

    a = np.asarray(x)
    if a.ndim == 4 and a.shape[-1] in (3, 4) and a.shape[1] not in (1, 3):
        a = a[..., :3].mean(-1)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"expected 2D images (N x H x W or N x C x H x W), got shape {a.shape}")
    if a.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device).float() / 255.0
    else:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        lo = t.amin(dim=(1, 2, 3), keepdim=True)
        hi = t.amax(dim=(1, 2, 3), keepdim=True)
        t = (t - lo) / (hi - lo).clamp_min(1e-8)
    return t


def resize_images(x, size: int, chunk: int = 2048):
    """Images (N x H x W or N x C x H x W, or N x H x W x 3|4) resized to ``size`` x ``size``
    (bilinear with antialiasing, as PIL), keeping uint8 as uint8; ``size`` 0 or the current
    size returns ``x`` itself. Done once when a run loads its data ("resize on load"), so the
    per-step cost does not depend on the stored size and every image of a set shares one size."""
    import numpy as np

    size = int(size or 0)
    a = np.asarray(x)
    if size <= 0 or len(a) == 0:
        return x
    if size < 8:
        raise ValueError(f"input_size must be 0 (keep the stored size) or at least 8 pixels, got {size}")
    if a.ndim == 4 and a.shape[-1] in (3, 4) and a.shape[1] not in (1, 3):
        a = a[..., :3].mean(-1).astype(a.dtype)
    squeeze = a.ndim == 3
    if a.ndim not in (3, 4):
        raise ValueError(f"expected 2D images (N x H x W or N x C x H x W), got shape {a.shape}")
    if a.shape[-2:] == (size, size):
        return a
    out_shape = (len(a),) + (() if squeeze else (a.shape[1],)) + (size, size)
    out = np.empty(out_shape, dtype=np.uint8 if a.dtype == np.uint8 else np.float32)
    for i in range(0, len(a), chunk):
        t = torch.from_numpy(np.ascontiguousarray(a[i:i + chunk], dtype=np.float32))
        t = t[:, None] if squeeze else t
        r = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        r = r[:, 0] if squeeze else r
        out[i:i + chunk] = r.round().clamp(0, 255).to(torch.uint8).numpy() if a.dtype == np.uint8 else r.numpy()
    return out
