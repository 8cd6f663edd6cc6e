"""pyvista mesh view: the current sample's mesh and points; several selected side by side
(linked cameras) or overlaid; renders something."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import nonblank


@pytest.fixture
def mesh_view(qtbot, model):
    from app._qt.mesh_view import MeshView
    from app.components import Selection

    sel = Selection()
    view = MeshView(model, sel)
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    qtbot.waitExposed(view)
    yield view, sel
    view.close_plotter()


def test_current_mesh_and_points(qtbot, mesh_view, project_copy):
    view, sel = mesh_view
    _, info = project_copy
    sid = info["mask_ids"][2]
    with qtbot.waitSignal(view.shown, timeout=10000):
        sel.select([sid], current=sid)
    assert view.shown_ids == [sid]
    stored = view.model.project.arrays.load_extra(f"meshes/{sid}")
    v, f = view.mesh(sid)
    np.testing.assert_array_equal(v, stored["data"])
    assert view.points(sid).shape == (1024, 3)
    actors = view.plotter.renderer.actors
    assert len(actors) == 2  # mesh + points
    assert "1024 points" in view.info.text()
    assert nonblank(view.screenshot())
    view.show_points.setChecked(False)
    assert len(view.plotter.renderer.actors) == 1


def test_side_by_side_and_overlay(qtbot, mesh_view, project_copy):
    view, sel = mesh_view
    _, info = project_copy
    ids = info["mask_ids"][:3]
    sel.select(ids, current=ids[1])
    view.mode.setCurrentText("side by side")
    assert view.shown_ids[0] == ids[1] and set(view.shown_ids) == set(ids)
    assert len(view.plotter.renderers) == 3
    # linked cameras: one camera object shared by every panel
    cams = {id(r.camera) for r in view.plotter.renderers}
    assert len(cams) == 1
    assert nonblank(view.screenshot())
    view.mode.setCurrentText("overlay")
    assert len(view.plotter.renderers) == 1
    assert len(view.plotter.renderer.actors) == 6
    view.reset_camera()
    st = view.camera_state()
    assert st["mode"] == "overlay" and len(st["position"]) == 3


def test_volume_without_mesh_and_mask_fallback(qtbot, mesh_view, project_copy):
    view, sel = mesh_view
    _, info = project_copy
    ct = info["ct_id"]
    sel.select([ct], current=ct)
    # the CT has an organ label map: its surface comes from marching cubes of that map
    assert view.mesh(ct) is not None
    assert view.points(ct) is None
    assert len(view.plotter.renderer.actors) == 1


def _stale_surface_wrappers() -> list:
    """Wrappers of QOffscreenSurfaces Python does not own and PySide still thinks alive."""
    import gc

    import shiboken6
    from qtpy.QtGui import QOffscreenSurface

    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which warns on torch's deprecated objects
    return [o for o in gc.get_objects() if issubclass(type(o), QOffscreenSurface)
            and shiboken6.isValid(o) and not shiboken6.ownedByPython(o)]


def test_closed_views_leave_no_stale_gl_wrappers(qtbot, model, project_copy):
    """Qt deletes the GL widget's offscreen surface without telling PySide: a wrapper kept past
    that was handed back for the next Qt object at the same address (a window reopened in the
    app tests failed with a TypeError, and in CI with a segfault)."""
    from qtpy.QtCore import QCoreApplication, QEvent

    from app._qt.mesh_view import MeshView
    from app.components import Selection

    sel = Selection()
    view = MeshView(model, sel)
    view.resize(700, 500)
    view.show()
    qtbot.waitExposed(view)
    sid = project_copy[1]["mask_ids"][0]
    with qtbot.waitSignal(view.shown, timeout=10000):
        sel.select([sid], current=sid)
    view.mode.setCurrentText("side by side")  # replaces the plotter: the old one is closed
    sel.select(project_copy[1]["mask_ids"][:2], current=sid)
    view.mode.setCurrentText("current")
    assert nonblank(view.screenshot())
    view.close_plotter()
    plotter = view.plotter
    view.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    # the view's Python object (and its plotter) outlives the widgets, as a closed window's does
    # (counted, not shown: printing a stale wrapper can itself crash)
    holds_surface = plotter.__dict__.get("_surface") is not None
    assert not holds_surface, "the closed interactor still holds its GL surface"
    n_stale = len(_stale_surface_wrappers())
    assert n_stale == 0, f"{n_stale} stale QOffscreenSurface wrappers"
