"""The scatter's Qt-free parts: rasterisation, hit tests, nearest-point picking, colour coding."""
from __future__ import annotations

import numpy as np
import pytest

from app._qt.scatter.palette import MISSING_NAME, categorical_palette, code_values
from app._qt.scatter.picking import NearestPicker, box_hits, lasso_hits
from app._qt.scatter.raster import PointIndex, dilate, rasterise


def argb(word):
    w = int(word)
    return (w >> 24) & 255, (w >> 16) & 255, (w >> 8) & 255, w & 255


def test_rasterise_places_and_colours_points():
    pal = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    x = np.array([0.5, 9.5, 9.5])
    y = np.array([0.5, 4.5, 4.5])
    img = rasterise(x, y, np.array([0, 1, 1]), pal, (0, 0, 10, 5), (5, 10), spread=0)
    assert img.shape == (5, 10) and img.dtype == np.uint32
    a, r, g, b = argb(img[0, 0])                 # row 0 is y0
    assert r == a and g == b == 0 and 0 < a < 255   # premultiplied pure red, one point: not opaque
    a2, r2, g2, b2 = argb(img[4, 9])
    assert a2 == 255 and b2 == 255 and r2 == 0     # the densest pixel is opaque
    assert np.count_nonzero(img) == 2


def test_rasterise_mean_colour_and_spread():
    pal = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    img = rasterise(np.array([2.5, 2.5]), np.array([2.5, 2.5]), np.array([0, 1]), pal, (0, 0, 5, 5), (5, 5), spread=1)
    a, r, g, b = argb(img[2, 2])
    assert abs(r - b) <= 1 and r > 0               # half red, half blue
    assert np.count_nonzero(img) == 9              # grown to a 3x3 square
    # numpy path, above mean_colour_max: the pixel takes one point's colour instead of the mean
    img = rasterise(np.array([2.5, 2.5]), np.array([2.5, 2.5]), np.array([0, 1]), pal, (0, 0, 5, 5), (5, 5),
                    spread=0, mean_colour_max=1, use_kernels=False)
    _, r, _, b = argb(img[2, 2])
    assert {r, b} == {0, 255}


def test_rasterise_selection_over_faded_rest():
    pal = np.array([[0, 160, 0]], np.uint8)
    x = np.array([1.5, 1.5, 3.5])
    y = np.array([1.5, 1.5, 3.5])
    sel = np.array([True, False, False])
    img = rasterise(x, y, np.zeros(3, int), pal, (0, 0, 5, 5), (5, 5), selected=sel, spread=0)
    a_sel = argb(img[1, 1])[0]
    a_rest = argb(img[3, 3])[0]
    assert a_sel > 190 and a_rest < 80             # selected on top (over a faded one), rest faded
    none = rasterise(x, y, np.zeros(3, int), pal, (0, 0, 5, 5), (5, 5), selected=np.zeros(3, bool), spread=0)
    assert argb(none[3, 3])[0] > a_rest


def test_dilate_prefers_opaque():
    img = np.zeros((5, 5), np.uint32)
    img[2, 2] = 0xFF0000FF
    img[2, 3] = 0x40000040
    out = dilate(img, 1)
    assert out[1, 1] == 0xFF0000FF and out[2, 4] == 0x40000040 and out[0, 0] == 0


def test_point_index_visible_and_hits():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(5000, 2))
    idx = PointIndex(xy)
    rect = (-0.5, -1.0, 1.0, 0.3)
    want = np.flatnonzero((xy[:, 0] >= -0.5) & (xy[:, 0] < 1.0) & (xy[:, 1] >= -1.0) & (xy[:, 1] < 0.3))
    assert sorted(idx.order[idx.visible_indices(rect)]) == sorted(want)
    assert idx.count_visible(rect) == len(want)
    got = box_hits(idx, (1.0, 0.3, -0.5, -1.0))    # corners in any order, inclusive
    assert len(got) >= len(want)

    from matplotlib.path import Path

    star = np.array([(0, 2), (0.5, 0.5), (2, 0), (0.5, -0.5), (0, -2), (-0.5, -0.5), (-2, 0), (-0.5, 0.5)])
    hits = idx.order[lasso_hits(idx, star)]
    assert sorted(hits) == sorted(np.flatnonzero(Path(star).contains_points(xy)))
    # a self-crossing lasso (a figure eight) keeps both lobes
    eight = np.array([(-2, -1), (2, 1), (2, -1), (-2, 1)])
    lobes = idx.order[lasso_hits(idx, eight)]
    assert (xy[lobes, 0] < 0).any() and (xy[lobes, 0] > 0).any()
    assert len(lasso_hits(idx, star[:2])) == 0
    with pytest.raises(ValueError, match="shape"):
        lasso_hits(idx, np.zeros((4, 3)))


def test_nearest_uses_screen_distance():
    # B is nearer in data units, A is nearer on screen (y is stretched ten times more than x)
    xy = np.array([[0.5, 0.0], [0.0, 0.3], [5.0, 5.0]])
    p = NearestPicker(PointIndex(xy))
    order = p.index.order
    i = p.nearest(0.0, 0.0, px_per_unit=(10.0, 100.0), radius_px=40)
    assert xy[order[i]].tolist() == [0.5, 0.0]                   # 5 px away vs 30 px
    i = p.nearest(0.0, 0.0, px_per_unit=(100.0, 10.0), radius_px=40)
    assert xy[order[i]].tolist() == [0.0, 0.3]                   # now 50 px vs 3 px
    assert p.nearest(0.0, 0.0, px_per_unit=(10.0, 100.0), radius_px=4) is None


def test_code_values_categorical_and_continuous():
    c = code_values(["10", "2", "", None, "b", "2"], True)
    assert c.names == ["2", "10", "b", MISSING_NAME] and c.counts == [2, 1, 1, 2]
    assert c.names[c.codes[0]] == "10" and c.names[c.codes[3]] == MISSING_NAME
    assert tuple(c.colours[-1]) == (190, 190, 190)
    v = code_values([0.0, np.nan, 2.0, 1.0], False)
    assert not v.categorical and (v.vmin, v.vmax, v.n_missing) == (0.0, 2.0, 1)
    assert v.codes[0] == 0 and v.codes[2] == 255 and v.codes[1] == 256
    r = v.reordered(np.array([2, 0, 1, 3]))
    assert r.value_text(0) == "2" and r.value_text(2) == "–"
    pal = categorical_palette(40)
    assert len({tuple(p) for p in pal}) == 40


def test_fused_kernels_match_numpy():
    from app._qt.scatter import _kernels

    if not _kernels.warm(block=True):
        pytest.skip(f"numba kernels unavailable: {_kernels._state['failed']}")
    rng = np.random.default_rng(3)
    xy = rng.normal(size=(20000, 2))
    idx = PointIndex(xy)
    codes = rng.integers(0, 13, len(xy))
    pal = categorical_palette(13)
    for sel in (None, rng.random(len(xy)) < 0.2):
        s = None if sel is None else sel[idx.order]
        kw = dict(selected=s, spread=1, mean_colour_max=10**9)
        a = rasterise(idx.x, idx.y, codes, pal, (-3, -2, 3, 2.5), (120, 160), use_kernels=True, **kw)
        b = rasterise(idx.x, idx.y, codes, pal, (-3, -2, 3, 2.5), (120, 160), use_kernels=False, **kw)
        ch = lambda img: np.stack([(img >> k) & 255 for k in (24, 16, 8, 0)]).astype(int)
        assert np.abs(ch(a) - ch(b)).max() <= 1      # float32 vs float64 rounding only
        assert np.count_nonzero(a) == np.count_nonzero(b) > 1000
