"""ScatterView on real embeddings: a PCA of OrganAMNIST CT crops (no project), and the shared
test project (AdrenalMNIST3D shapes with a run, a clustering and labels) through ProjectModel."""
from __future__ import annotations

import numpy as np
import pytest
from qtpy import QtCore, QtGui
from qtpy.QtTest import QTest

from tests.conftest import DATA, need

ORGANS = np.array(["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
                   "liver", "lung-left", "lung-right", "pancreas", "spleen"], dtype=object)
PER_CLASS = 40


@pytest.fixture(scope="module")
def organ_pca():
    """(ids, xy, organ names, mean intensity) of a seeded per-class OrganAMNIST subsample."""
    from sklearn.decomposition import PCA

    d = np.load(need(DATA / "organamnist" / "organamnist.npz"))
    y = d["train_labels"].ravel()
    rng = np.random.default_rng(0)
    take = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == k), PER_CLASS, replace=False)
                                   for k in range(len(ORGANS))]))
    x = d["train_images"][take].reshape(len(take), -1).astype(np.float32) / 255.0
    xy = PCA(2, random_state=0).fit_transform(x)
    ids = np.array([f"organamnist/train/{i}" for i in take], dtype=object)
    return ids, xy, ORGANS[y[take]], x.mean(1)


@pytest.fixture
def view(qtbot, organ_pca):
    from app._qt.scatter import ScatterView
    from app.components import Selection

    v = ScatterView(None, Selection())
    qtbot.addWidget(v)
    v.resize(900, 640)
    v.show()
    qtbot.waitExposed(v)
    ids, xy, organs, _ = organ_pca
    v.set_points(ids, xy)
    v.set_colours(organs, True, title="organ")
    v.flush()
    return v


def grab(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format_RGB888)
    w, h = img.width(), img.height()
    return np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)[:, :w * 3].reshape(h, w, 3).copy()


def plot_pixels(view) -> np.ndarray:
    return grab(view.plot)


def drag(qtbot, view, points, modifiers=QtCore.Qt.NoModifier):
    """A left-button drag along data-coordinate ``points`` with real mouse events; returns the
    points as the mouse had them (rounded to whole pixels), in data coordinates."""
    vp = view.plot.viewport()

    def at(p):
        sp = view.vb.mapViewToScene(QtCore.QPointF(*p))
        return view.plot.mapFromScene(sp)

    pts = [at(p) for p in points]
    QTest.mousePress(vp, QtCore.Qt.LeftButton, modifiers, pts[0])
    for q in pts[1:] + [pts[-1]]:
        ev = QtGui.QMouseEvent(QtCore.QEvent.MouseMove, QtCore.QPointF(q), QtCore.QPointF(vp.mapToGlobal(q)),
                               QtCore.Qt.NoButton, QtCore.Qt.LeftButton, modifiers)
        QtCore.QCoreApplication.sendEvent(vp, ev)
    QTest.mouseRelease(vp, QtCore.Qt.LeftButton, modifiers, pts[-1])
    qtbot.wait(10)
    back = [view.vb.mapSceneToView(view.plot.mapToScene(q)) for q in pts]
    return np.array([(p.x(), p.y()) for p in back])


def inside(xy, poly):
    from matplotlib.path import Path

    return Path(np.asarray(poly)).contains_points(xy)


# ---------------------------------------------------------------------------------------- drawing
def test_shows_points_and_legend_counts(view, organ_pca, tmp_path):
    ids, xy, organs, _ = organ_pca
    assert view.n_points == len(ids) and view.render_mode in ("raster", "markers")
    px = plot_pixels(view)
    coloured = (px.max(-1).astype(int) - px.min(-1)) > 60   # saturated pixels: points, not background
    assert coloured.mean() > 0.005
    assert len(np.unique(px[coloured] // 32, axis=0)) > 5        # several category colours
    assert view.legend.counts() == {o: PER_CLASS for o in ORGANS}
    assert [r[0] for r in view.legend.rows()] == list(ORGANS)
    out = view.grab_png(tmp_path / "scatter.png")
    assert QtGui.QImage(out).width() > 100


def test_raster_and_marker_modes_look_alike(view):
    view.marker_threshold = 10          # force the raster for these few hundred points
    view.reset_view(); view.flush(force=True)
    assert view.render_mode == "raster"
    a = plot_pixels(view)
    view.marker_threshold = 100_000
    view.reset_view(); view.flush(force=True)
    assert view.render_mode == "markers"
    b = plot_pixels(view)
    # both draw the same layout: where one has ink the other mostly has too
    ink_a = a.min(-1) < 200
    ink_b = b.min(-1) < 200
    assert ink_a.sum() > 200 and ink_b.sum() > 200
    assert (ink_a & ink_b).sum() / ink_a.sum() > 0.3


def test_colour_by_continuous_shows_colour_bar(view, organ_pca):
    ids, xy, organs, intensity = organ_pca
    before = plot_pixels(view)
    view.set_colours(intensity, False, title="mean intensity")
    view.flush()
    assert view.legend.counts() == {}
    assert view.legend.title == "mean intensity"
    assert view._coding.vmin == pytest.approx(intensity.min()) and view._coding.vmax == pytest.approx(intensity.max())
    after = plot_pixels(view)
    assert np.abs(after.astype(int) - before).sum() > 0
    with pytest.raises(ValueError, match="values for"):
        view.set_colours(intensity[:-1], False)


def test_zoom_switches_to_markers_and_pan_moves(view, qtbot):
    view.marker_threshold = 50
    view.reset_view(); view.flush(force=True)
    assert view.render_mode == "raster"
    view.vb.scaleBy((0.05, 0.05)); view.flush()
    assert view.render_mode == "markers"
    (x0, x1), _ = view.vb.viewRange()
    view.vb.translateBy(x=(x1 - x0) * 0.5); view.flush()
    (u0, u1), _ = view.vb.viewRange()
    assert u0 == pytest.approx(x0 + (x1 - x0) * 0.5)
    # the wheel zooms (pyqtgraph's own handler)
    view.reset_view(); view.flush(force=True)
    w0 = np.diff(view.vb.viewRange()[0])[0]
    vp = view.plot.viewport()
    pos = QtCore.QPointF(vp.width() / 2, vp.height() / 2)
    ev = QtGui.QWheelEvent(pos, QtCore.QPointF(vp.mapToGlobal(pos.toPoint())), QtCore.QPoint(0, 0),
                           QtCore.QPoint(0, 240), QtCore.Qt.NoButton, QtCore.Qt.NoModifier,
                           QtCore.Qt.NoScrollPhase, False)
    QtCore.QCoreApplication.sendEvent(vp, ev)
    assert np.diff(view.vb.viewRange()[0])[0] < w0


# ---------------------------------------------------------------------------------------- selection
def test_programmatic_lasso_and_box_with_add_and_subtract(view, organ_pca):
    ids, xy, _, _ = organ_pca
    sel = view.selection
    c = np.median(xy, 0)
    s = xy.std(0)
    poly = [(c[0] - s[0], c[1] - s[1]), (c[0] + s[0], c[1] - 0.5 * s[1]), (c[0], c[1] + s[1])]
    got = view.lasso_select(poly, "replace")
    want = set(ids[inside(xy, poly)])
    assert set(got) == want and set(sel.ids) == want and 0 < len(want) < len(ids)
    assert view._n_selected == len(want)

    box = (c[0], c[1], c[0] + 2 * s[0], c[1] + 2 * s[1])
    in_box = set(ids[(xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])])
    view.box_select(box, "add")
    assert set(sel.ids) == want | in_box
    view.box_select(box, "subtract")
    assert set(sel.ids) == want - in_box
    assert view._n_selected == len(want - in_box)
    view.lasso_select(poly, "replace")
    assert set(sel.ids) == want


def test_mouse_lasso_and_box_follow_modifiers(view, qtbot, organ_pca):
    ids, xy, _, _ = organ_pca
    sel = view.selection
    c, s = np.median(xy, 0), xy.std(0)
    view.set_tool("box")
    used = drag(qtbot, view, [(c[0] - s[0], c[1] - s[1]), (c[0], c[1]), (c[0] + s[0], c[1] + s[1])])
    (ax, ay), (bx, by) = used[0], used[-1]
    first = set(sel.ids)
    assert first == set(ids[(xy[:, 0] >= min(ax, bx)) & (xy[:, 0] <= max(ax, bx))
                            & (xy[:, 1] >= min(ay, by)) & (xy[:, 1] <= max(ay, by))])
    view.set_tool("lasso")
    poly = [(c[0] + 0.5 * s[0], c[1] - 2 * s[1]), (c[0] + 3 * s[0], c[1] - 2 * s[1]),
            (c[0] + 3 * s[0], c[1] + 2 * s[1]), (c[0] + 0.5 * s[0], c[1] + 2 * s[1])]
    used = drag(qtbot, view, poly, QtCore.Qt.ShiftModifier)
    lasso = view.last_drag                       # the path the view collected from the events
    assert np.allclose(lasso.min(0), used.min(0)) and np.allclose(lasso.max(0), used.max(0))
    lassoed = set(ids[inside(xy, lasso)])
    assert lassoed and set(sel.ids) == first | lassoed
    drag(qtbot, view, poly, QtCore.Qt.ControlModifier)
    assert set(sel.ids) == first - lassoed
    drag(qtbot, view, poly, QtCore.Qt.AltModifier)
    assert set(sel.ids) == first - lassoed
    assert first - lassoed and first & lassoed


def test_external_selection_highlights(view, organ_pca):
    ids, xy, _, _ = organ_pca
    before = plot_pixels(view)
    view.selection.select(list(ids[:30]) + ["not-in-this-view"])
    assert view._n_selected == 30
    assert "30 selected" in view.status.text()
    after = plot_pixels(view)
    assert np.abs(after.astype(int) - before).sum() > 0       # the rest fades


def test_click_selects_nearest(view, qtbot, organ_pca):
    ids, xy, _, _ = organ_pca
    view.vb.scaleBy((0.3, 0.3), center=QtCore.QPointF(*xy[7])); view.flush()
    kx, ky = view._px_per_unit()
    # two screen pixels away from point 7: that point (the nearest on screen) becomes current
    d2 = ((xy[:, 0] - xy[7, 0]) * kx) ** 2 + ((xy[:, 1] - xy[7, 1]) * ky) ** 2
    d2[7] = np.inf
    assert d2.min() > 16, "point 7 needs a free neighbourhood for this test"
    x, y = xy[7, 0] + 2 / kx, xy[7, 1]
    assert view.click_at(x, y) == ids[7]
    assert view.selection.current == ids[7] and view.selection.ids == (ids[7],)
    # a real mouse click, Shift adding another point
    j = int(np.argsort(d2)[3])
    sp = view.vb.mapViewToScene(QtCore.QPointF(*xy[j]))
    QTest.mouseClick(view.plot.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.ShiftModifier, view.plot.mapFromScene(sp))
    qtbot.waitUntil(lambda: view.selection.current == ids[j], timeout=2000)
    assert set(view.selection.ids) == {ids[7], ids[j]}
    # empty space clears
    (x0, x1), (y0, y1) = view.vb.viewRange()
    view.click_at(x1 + 100 * (x1 - x0), y1 + 100 * (y1 - y0))
    assert view.selection.ids == ()


def test_hover_shows_id_without_model(view, organ_pca):
    ids, xy, organs, _ = organ_pca
    text = view.hover_at(*xy[11])
    assert text is not None and text.splitlines()[0] in set(ids)
    assert view.hover_card.isVisible() and "organ:" in text


# ---------------------------------------------------------------------------------------- with a project
def test_project_model_colouring_hover_and_updates(qtbot, model):
    from app._qt.scatter import ScatterView
    from app.components import ColourBy, Selection

    colour = ColourBy("cluster")
    v = ScatterView(model, Selection(), colour)
    qtbot.addWidget(v)
    v.resize(800, 560)
    v.show()
    qtbot.waitExposed(v)
    ids, xy = model.projection("pca")
    assert v.n_points == len(ids)
    assert sum(v.legend.counts().values()) == len(ids) and len(v.legend.counts()) == 4
    for column in ("label", "predicted", "split", "dev", "meta:index"):
        colour.column = column
        assert v.colour_combo.currentText() == column
        if column == "meta:index":
            assert v.legend.counts() == {}            # numeric with many values: a colour bar
        else:
            assert sum(v.legend.counts().values()) == len(ids)
    colour.column = "label"
    before = v.legend.counts()
    sid = str(ids[0])
    text = v.hover_at(*xy[0])
    assert sid in text and "labels:" in text
    assert v.hover_card.image.pixmap() is not None and not v.hover_card.image.pixmap().isNull()
    # a label edit elsewhere recolours the scatter
    model.set_label([sid], "hyperplasia", True)
    model.set_label([sid], "normal", False)
    after = v.legend.counts()
    assert after != before and sum(after.values()) == len(ids)
    # UMAP not computed yet: PCA stays on screen (the background UMAP itself is not run here:
    # numba's first compile alone takes longer than this whole file)
    v.auto_umap = False
    v.set_projection_kind("umap")
    assert v.n_points == len(ids) and v.projection_combo.currentText() == "UMAP"
    assert np.allclose(np.sort(v._index.x), np.sort(xy[:, 0]))
    # ... and when a UMAP projection lands in the project the view switches to it
    flipped = np.column_stack([xy[:, 1], -xy[:, 0]])
    model.save_projection("umap", ids, flipped)
    assert np.allclose(np.sort(v._index.x), np.sort(flipped[:, 0]))
    v.set_projection_kind("pca")
    assert np.allclose(np.sort(v._index.x), np.sort(xy[:, 0]))
    v.disconnect_models()


def test_legend_click_selects_category(view, organ_pca):
    ids, xy, organs, _ = organ_pca
    view.select_category("liver")
    assert set(view.selection.ids) == set(ids[organs == "liver"])
    view.select_category("heart", "add")
    assert set(view.selection.ids) == set(ids[(organs == "liver") | (organs == "heart")])
    # a click on a legend row (the app's modifier state is left over from other tests' synthetic
    # events, so the signal is emitted as the row would with no modifier held)
    assert view.legend._tree.topLevelItem(0).data(0, QtCore.Qt.UserRole) == "bladder"
    view.legend.category_clicked.emit("bladder", QtCore.Qt.NoModifier)
    assert set(view.selection.ids) == set(ids[organs == "bladder"])
    view.legend.category_clicked.emit("heart", QtCore.Qt.ControlModifier)
    assert set(view.selection.ids) == set(ids[organs == "bladder"])


def test_session_state_round_trip(view, qtbot, organ_pca):
    import json

    from app._qt.scatter import ScatterView

    view.vb.scaleBy((0.5, 0.5)); view.set_tool("lasso")
    st = json.loads(json.dumps(view.state()))
    other = ScatterView(None)
    qtbot.addWidget(other)
    other.resize(view.size()); other.show()
    ids, xy, _, _ = organ_pca
    other.set_points(ids, xy)
    other.restore_state(st)
    assert other.tool == "lasso"
    assert np.allclose(np.ravel(other.vb.viewRange()), np.ravel(view.vb.viewRange()))
