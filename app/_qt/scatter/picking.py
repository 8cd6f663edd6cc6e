"""Which points a lasso, a box or the mouse pointer hits (no Qt here)."""
from __future__ import annotations

import threading

import numpy as np
import shapely

from .raster import PointIndex


def lasso_hits(index: PointIndex, polygon) -> np.ndarray:
    """Sorted-order indices of points inside ``polygon`` (sequence of (x, y) in data coords).

    The polygon's bounding box cuts the candidates to an x-slice plus a y test first; only those
    go through shapely's vectorised point-in-polygon test.
    """
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"lasso polygon must have shape (k, 2), got {poly.shape}")
    if len(poly) < 3:
        return np.zeros(0, dtype=np.intp)
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0)
    cand = index.visible_indices((x0, y0, np.nextafter(x1, np.inf), np.nextafter(y1, np.inf)))
    if cand.size == 0:
        return cand
    shape = shapely.Polygon(poly)
    if not shape.is_valid:  # a self-crossing freehand lasso: keep every lobe, as users expect
        shape = shapely.make_valid(shape)
    shapely.prepare(shape)
    inside = shapely.contains_xy(shape, index.x[cand], index.y[cand])
    return cand[inside]


def box_hits(index: PointIndex, rect) -> np.ndarray:
    """Sorted-order indices of points in ``rect`` = (x0, y0, x1, y1), bounds inclusive."""
    x0, y0, x1, y1 = rect
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    return index.visible_indices((x0, y0, np.nextafter(x1, np.inf), np.nextafter(y1, np.inf)))


class NearestPicker:
    """Nearest point to the pointer, measured in screen pixels.

    The KD-tree (scipy ``cKDTree``) is built once over coordinates scaled by the data extent, so
    a pixel radius maps to one ball radius whatever the zoom; candidates inside the ball are then
    ranked by their true screen distance (x and y may be scaled differently on screen). The tree
    is built on a background thread so a million points do not freeze the first hover.
    """

    def __init__(self, index: PointIndex):
        self.index = index
        bx0, by0, bx1, by1 = index.bounds
        self._origin = np.array([bx0, by0])
        self._extent = np.array([max(bx1 - bx0, 1e-12), max(by1 - by0, 1e-12)])
        self._tree = None
        self._thread = threading.Thread(target=self._build, daemon=True)
        self._thread.start()

    def _build(self):
        from scipy.spatial import cKDTree

        pts = (np.column_stack([self.index.x, self.index.y]) - self._origin) / self._extent
        pts = np.nan_to_num(pts, nan=1e9, posinf=1e9, neginf=-1e9)
        self._tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)

    @property
    def tree(self):
        if self._tree is None:
            self._thread.join()
        return self._tree

    def nearest(self, x: float, y: float, px_per_unit: tuple[float, float], radius_px: float = 8.0) -> int | None:
        """Sorted-order index of the nearest point within ``radius_px`` screen pixels, or None."""
        if self.index.n == 0:
            return None
        kx, ky = px_per_unit
        q = (np.array([x, y]) - self._origin) / self._extent
        # the ball must cover radius_px along both axes: take the larger radius in tree units
        r = max(radius_px / (kx * self._extent[0]), radius_px / (ky * self._extent[1]))
        cand = np.asarray(self.tree.query_ball_point(q, r), dtype=np.intp)
        if cand.size == 0:
            return None
        d2 = ((self.index.x[cand] - x) * kx) ** 2 + ((self.index.y[cand] - y) * ky) ** 2
        j = int(np.argmin(d2))
        return int(cand[j]) if d2[j] <= radius_px ** 2 else None
