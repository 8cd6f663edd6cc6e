"""Point rasterisation: what makes a million points interactive (no Qt here).

A pyqtgraph ``ScatterPlotItem`` draws every marker with QPainter on every repaint (about a
second at 1M points). Instead, while many points are in view, the visible points are binned
into a screen-sized grid with ``np.bincount`` (a count and a colour sum per pixel, one pass for
unselected and selected points together), the mean colour of each pixel is shown with an
opacity that grows with log(count), and the selected layer is composited over a faded
unselected layer. The result is one RGBA image the view draws in a few milliseconds and only
recomputes when the visible range, the colours or the selection change.
"""
from __future__ import annotations

import numpy as np


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


def _spread(a: np.ndarray, r: int) -> np.ndarray:
    """Box-sum over (2r+1)^2 pixels of the last two axes (separable), so isolated points show
    as small squares instead of single pixels."""
    for _ in range(r):
        b = a.copy()
        b[..., 1:, :] += a[..., :-1, :]
        b[..., :-1, :] += a[..., 1:, :]
        a = b.copy()
        a[..., 1:] += b[..., :-1]
        a[..., :-1] += b[..., 1:]
    return a


def _premultiplied(planes, *, alpha_min, alpha_scale, cmax, grey=0.0):
    """Premultiplied rgb ``(3, H, W)`` and alpha ``(H, W)`` of one accumulated layer
    (``planes``: count, then the red, green and blue sums)."""
    count = planes[0]
    # opacity grows with log(count); a lookup table over integer counts avoids a log per pixel
    k = np.arange(int(cmax) + 1, dtype=np.float32)
    lut = np.where(k > 0, alpha_min + (1 - alpha_min) * np.log1p(k) / np.log1p(max(cmax, 1.0)), 0.0)
    alpha = (lut * alpha_scale).astype(np.float32)[count.astype(np.intp)]
    scale = alpha / np.maximum(count, 1.0)       # mean colour times alpha
    rgb = planes[1:4] * scale
    if grey:
        rgb = rgb * (1 - grey) + (0.6 * grey) * alpha
    return rgb, alpha


def rasterise(x, y, rgb, rect, shape, *, selected=None, spread=1, alpha_min=0.45,
              faded_alpha=0.22, faded_grey=0.5) -> np.ndarray:
    """Premultiplied ARGB32 image as uint8 ``(H, W, 4)`` in B, G, R, A byte order (row 0 at
    ``rect``'s y0): ``QImage.Format_ARGB32_Premultiplied`` on little-endian machines.

    ``rgb`` is ``(3, n)`` float32 colours in 0..1. When ``selected`` (bool, n) has any True, the
    other points are drawn faded and greyed under the selected ones.
    """
    x0, y0, x1, y1 = rect
    H, W = shape
    npx = H * W
    ix = (x - x0) * (W / (x1 - x0))
    iy = (y - y0) * (H / (y1 - y0))
    np.clip(ix, 0, W - 1, out=ix)
    np.clip(iy, 0, H - 1, out=iy)
    pix = iy.astype(np.intp)
    pix *= W
    pix += ix.astype(np.intp)
    two = selected is not None and bool(selected.any())
    layers = 2 if two else 1
    if two:
        pix += selected.astype(np.intp) * npx   # selected points go to a second grid, same pass
    planes = np.empty((4, layers * npx), dtype=np.float32)
    planes[0] = np.bincount(pix, minlength=layers * npx)
    for c in range(3):
        planes[c + 1] = np.bincount(pix, weights=rgb[c], minlength=layers * npx)
    planes = planes.reshape(4, layers, H, W)
    if spread:
        planes = _spread(planes, spread)
    cmax = float(planes[0].max()) if planes.size else 1.0
    if not two:
        rgb_p, a = _premultiplied(planes[:, 0], alpha_min=alpha_min, alpha_scale=1.0, cmax=cmax)
    else:
        base, base_a = _premultiplied(planes[:, 0], alpha_min=alpha_min, alpha_scale=faded_alpha,
                                      cmax=cmax, grey=faded_grey)
        sel, sel_a = _premultiplied(planes[:, 1], alpha_min=0.75, alpha_scale=1.0, cmax=cmax)
        keep = 1 - sel_a
        rgb_p = sel + base * keep
        a = sel_a + base_a * keep
    out = np.empty((H, W, 4), dtype=np.uint8)
    for c, ch in ((2, 0), (1, 1), (0, 2)):          # B, G, R
        out[..., c] = rgb_p[ch] * 255 + 0.5
    out[..., 3] = a * 255 + 0.5
    return out
