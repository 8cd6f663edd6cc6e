"""Point rasterisation: what makes a million points interactive (no Qt here).

A pyqtgraph ``ScatterPlotItem`` draws every marker with QPainter on every repaint (about a
second at 1M points). Instead, while many points are in view, the visible points are binned
into a screen-sized grid with ``np.bincount`` (unselected and selected points in one pass),
each pixel holding points gets its colour and an opacity that grows with log(count), and the
selected layer is composited over a faded unselected layer. The result is one RGBA image the view draws in a few milliseconds and only
recomputes when the visible range, the colours or the selection change.
"""
from __future__ import annotations

import numpy as np

from . import _kernels


class PointIndex:
    """Points sorted by x, so the visible subset of a range is a slice plus a y test."""

    def __init__(self, xy):
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {xy.shape}")
        self.order = np.argsort(xy[:, 0], kind="stable")
        self.x = np.ascontiguousarray(xy[self.order, 0])
        self.y = np.ascontiguousarray(xy[self.order, 1])
        self.n = len(self.x)
        finite = np.isfinite(self.x) & np.isfinite(self.y)
        if self.n and finite.any():
            self.bounds = (float(self.x[finite].min()), float(self.y[finite].min()),
                           float(self.x[finite].max()), float(self.y[finite].max()))
        else:
            self.bounds = (0.0, 0.0, 1.0, 1.0)

    def visible(self, rect) -> tuple[int, int, np.ndarray | None]:
        """``(lo, hi, ymask)``: points ``lo:hi`` have x in range; ``ymask`` (or None: all) has y in range."""
        x0, y0, x1, y1 = rect
        lo, hi = np.searchsorted(self.x, [x0, x1], side="left")
        lo, hi = int(lo), int(hi)
        if hi <= lo:
            return lo, lo, None
        bx0, by0, bx1, by1 = self.bounds
        if by0 >= y0 and by1 < y1:
            return lo, hi, None
        ys = self.y[lo:hi]
        return lo, hi, (ys >= y0) & (ys < y1)

    def visible_indices(self, rect) -> np.ndarray:
        lo, hi, m = self.visible(rect)
        idx = np.arange(lo, hi)
        return idx if m is None else idx[m]

    def count_visible(self, rect) -> int:
        lo, hi, m = self.visible(rect)
        return hi - lo if m is None else int(np.count_nonzero(m))


def _alpha_lut(cmax: float, alpha_min: float) -> np.ndarray:
    """Opacity per integer count: grows with log(count), a lookup instead of a log per pixel."""
    k = np.arange(int(cmax) + 1, dtype=np.float32)
    return np.where(k > 0, alpha_min + (1 - alpha_min) * np.log1p(k) / np.log1p(max(cmax, 1.0)),
                    0.0).astype(np.float32)


def _pack(rgb_p: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Premultiplied float rgb (k, 3) and alpha (k,) in 0..1 -> ARGB32 words."""
    q = (rgb_p * 255 + 0.5).astype(np.uint32)
    return (((a * 255 + 0.5).astype(np.uint32) << 24) | (q[:, 0] << 16) | (q[:, 1] << 8) | q[:, 2])


def dilate(img: np.ndarray, r: int) -> np.ndarray:
    """3x3 (r times) maximum of ARGB32 words: alpha is the top byte, so every pixel takes its most
    opaque neighbour and isolated points grow into small squares; selected (opaque) points win."""
    for _ in range(r):
        b = img.copy()
        np.maximum(b[1:], img[:-1], out=b[1:])
        np.maximum(b[:-1], img[1:], out=b[:-1])
        img = b.copy()
        np.maximum(img[:, 1:], b[:, :-1], out=img[:, 1:])
        np.maximum(img[:, :-1], b[:, 1:], out=img[:, :-1])
    return img


def rasterise(x, y, codes, palette, rect, shape, *, selected=None, spread=1, alpha_min=0.45,
              faded_alpha=0.3, faded_grey=0.4, mean_colour_max=300_000, use_kernels=True) -> np.ndarray:
    """Premultiplied ARGB32 image ``(H, W)`` uint32 (``QImage.Format_ARGB32_Premultiplied``),
    row 0 at ``rect``'s y0.

    Point ``i`` has colour ``palette[codes[i]]`` (``palette``: (k, 3) uint8); a pixel shows the
    mean colour of its points (above ``mean_colour_max`` points: the colour of one of them, as in
    an overplotted scatter) with an opacity growing with log(count). ``spread`` r grows each
    point to a (2r+1)^2 square. When ``selected`` (bool per point) has any True, the other points
    are drawn faded and greyed under the selected ones.

    With the numba kernels compiled (``_kernels.warm``) and ``use_kernels``, one fused pass over
    the points and one over the pixels do all of it (always the mean colour). Otherwise numpy: the
    grid is only used for counting (``bincount``) and colours are computed for the pixels that
    hold points, so the cost follows the number of points more than the screen size.
    """
    x0, y0, x1, y1 = rect
    H, W = shape
    npx = W * H
    two = selected is not None and bool(selected.any())
    fused = _kernels.kernels() if use_kernels else None
    if fused is not None:
        img = _rasterise_fused(fused, x, y, codes, palette, rect, shape, selected if two else None,
                               alpha_min=alpha_min, faded_alpha=faded_alpha, faded_grey=faded_grey)
        return dilate(img, spread) if spread else img
    fx = (x - x0) * (W / (x1 - x0))
    fy = (y - y0) * (H / (y1 - y0))
    np.clip(fx, 0, W - 1, out=fx)
    np.clip(fy, 0, H - 1, out=fy)
    pix = fy.astype(np.intp)
    pix *= W
    pix += fx.astype(np.intp)
    if two:
        pix += selected.astype(np.intp) * npx   # selected points counted in a second grid
    count = np.bincount(pix, minlength=(2 if two else 1) * npx)
    nz = np.flatnonzero(count)                  # sorted: unselected pixels come first
    slot = np.empty(len(count), dtype=np.int32)   # only read where count > 0
    slot[nz] = np.arange(len(nz), dtype=np.int32)
    pslot = slot[pix]
    cnt = count[nz].astype(np.float32)
    pal = np.asarray(palette, dtype=np.float32) / 255.0
    codes = np.asarray(codes)
    if len(pix) <= mean_colour_max:
        mean = np.empty((len(nz), 3), np.float32)
        for c in range(3):
            mean[:, c] = np.bincount(pslot, weights=pal[:, c][codes], minlength=len(nz))
        mean /= cnt[:, None]
    else:
        # overplot, as any scatter does: one point's colour per pixel (three weighted bincounts
        # would cost more than everything else at a million points)
        top = np.empty(len(nz), dtype=codes.dtype)
        top[pslot] = codes
        mean = pal[top]
    cmax = float(cnt.max()) if len(cnt) else 1.0
    out = np.zeros(npx, dtype=np.uint32)
    if not two:
        a = _alpha_lut(cmax, alpha_min)[cnt.astype(np.intp)]
        out[nz] = _pack(mean * a[:, None], a)
    else:
        nb = int(np.searchsorted(nz, npx))     # nz[:nb] unselected, nz[nb:] selected
        ba = _alpha_lut(cmax, alpha_min)[cnt[:nb].astype(np.intp)] * faded_alpha
        brgb = (mean[:nb] * (1 - faded_grey) + 0.6 * faded_grey) * ba[:, None]
        out[nz[:nb]] = _pack(brgb, ba)
        sp = nz[nb:] - npx
        sa = _alpha_lut(cmax, 0.75)[cnt[nb:].astype(np.intp)]
        srgb = mean[nb:] * sa[:, None]
        # composite over the faded layer where both have points
        under = count[sp] > 0
        j = slot[sp[under]]                    # compact index of the faded pixel below
        keep = np.zeros(len(sp), np.float32)
        keep[under] = ba[j]
        srgb[under] += brgb[j] * (1 - sa[under])[:, None]
        out[sp] = _pack(srgb, sa + keep * (1 - sa))
    img = out.reshape(H, W)
    return dilate(img, spread) if spread else img


def _rasterise_fused(fused, x, y, codes, palette, rect, shape, selected, *, alpha_min, faded_alpha,
                     faded_grey) -> np.ndarray:
    accumulate, compose = fused
    x0, y0, x1, y1 = rect
    H, W = shape
    npx = W * H
    two = selected is not None
    layers = 2 if two else 1
    count = np.zeros(layers * npx, np.int64)
    sums = np.zeros((layers * npx, 3), np.float32)
    pal = np.ascontiguousarray(np.asarray(palette, dtype=np.float32) / 255.0)
    sel = np.ascontiguousarray(selected, dtype=np.bool_) if two else np.zeros(1, np.bool_)
    accumulate(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
               np.ascontiguousarray(codes, dtype=np.int32), sel, two, float(x0), float(y0),
               W / (x1 - x0), H / (y1 - y0), W, H, pal, count, sums)
    cmax = float(count.max()) if count.size else 1.0
    out = np.zeros(npx, np.uint32)
    compose(count, sums, npx, two, _alpha_lut(cmax, alpha_min), _alpha_lut(cmax, 0.75),
            float(faded_alpha), float(faded_grey), out)
    return out.reshape(H, W)
