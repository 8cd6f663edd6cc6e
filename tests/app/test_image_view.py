"""napari image view: follows the current sample; 2D/3D, window/level presets, label map and
residual overlays; renders something."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import nonblank


def open_view(qtbot, model):
    from app._qt.image_view import ImageView
    from app.components import Selection

    sel = Selection()
    view = ImageView(model, sel)
    qtbot.addWidget(view)
    view.resize(700, 600)
    view.show()
    qtbot.waitExposed(view)
    return view, sel


@pytest.fixture
def image_view(qtbot, model):
    view, sel = open_view(qtbot, model)
    yield view, sel
    view.close_viewer()


def test_follows_current_sample_and_shows_mask_volume(qtbot, image_view, project_copy):
    view, sel = image_view
    _, info = project_copy
    sid = info["mask_ids"][0]
    with qtbot.waitSignal(view.shown, timeout=10000):
        sel.select([sid], current=sid)
    layer = view.layer("image")
    assert layer.data.shape == (64, 64, 64)
    np.testing.assert_array_equal(layer.data, view.model.project.load_sample_array(sid))
    assert view.viewer.dims.current_step[0] == 32  # middle slice, not the first
    assert sid in view.info.text()
    shot = view.screenshot()
    assert nonblank(shot), "image canvas is blank"
    # next sample: same geometry, data replaced in place
    sid2 = info["mask_ids"][1]
    sel.set_current(sid2)
    assert view.sample_id == sid2
    np.testing.assert_array_equal(view.layer("image").data, view.model.project.load_sample_array(sid2))


def test_ct_presets_overlays_and_3d(qtbot, image_view, project_copy):
    view, sel = image_view
    _, info = project_copy
    ct = info["ct_id"]
    sel.select([ct], current=ct)
    assert view.layer("image").data.shape == (30, 101, 122)
    # organ label map and residual heatmap overlays
    labels = view.layer("labels")
    assert labels is not None and labels.data.max() == 117
    assert view.layer("residual") is not None
    assert view.layer("image").scale.tolist() == [3.0, 3.0, 3.0]
    view.set_preset("lung")
    assert tuple(view.layer("image").contrast_limits) == pytest.approx((-1350.0, 150.0))
    view.set_preset("brain")
    assert tuple(view.layer("image").contrast_limits) == pytest.approx((0.0, 80.0))
    view.show_mask.setChecked(False)
    assert not view.layer("labels").visible
    view.show_mask.setChecked(True)
    assert nonblank(view.screenshot())
    # volume rendering and back to slices
    view.mode3d.setChecked(True)
    assert view.viewer.dims.ndisplay == 3
    qtbot.wait(200)
    assert nonblank(view.screenshot()), "3D rendering is blank"
    view.mode3d.setChecked(False)
    assert view.viewer.dims.ndisplay == 2
    st = view.state()
    assert st["preset"].startswith("CT brain")


def test_bad_sample_reports_instead_of_raising(qtbot, image_view, project_copy):
    view, sel = image_view
    _, info = project_copy
    sid = info["mask_ids"][0]
    f = view.model.project.path / view.model.samples.at[sid, "data_file"]
    f.write_bytes(b"not an npy file")
    sel.select([sid], current=sid)
    assert "cannot show" in view.info.text()


def test_structure_samples_open_on_their_organ(qtbot, project_copy):
    """A structure of the CT opens on the slice through it (the right kidney lies 7 slices below
    the scan's middle), moves when another structure of the same scan is chosen, and its
    thumbnail is a crop around it, not the scan's middle slice."""
    from app.components import ProjectModel
    from core.focus import structure_focus
    from core.project import Project
    from core.workflows.derive import add_structures

    path, info = project_copy
    project = Project.open(path)
    ids, errors = add_structures(project, [info["ct_id"]], ["kidney_right", "liver"])
    project.close()
    assert not errors
    kidney, liver = ids
    model = ProjectModel.open(path, author="tester")
    view, sel = open_view(qtbot, model)
    try:
        sel.select([info["ct_id"]], current=info["ct_id"])
        assert view.viewer.dims.current_step[0] == 15          # a scan: its middle slice
        for sid in (kidney, liver):
            sel.select([sid], current=sid)
            labels = view.layer("labels")
            focus = structure_focus(labels.data > 0)
            assert tuple(view.viewer.dims.current_step) == focus
            step = view.viewer.dims.current_step[0]
            assert (labels.data[step] > 0).any()               # the organ is on the shown slice
        assert structure_focus(view.layer("labels").data > 0)[0] != 15
        sel.select([kidney], current=kidney)
        assert view.viewer.dims.current_step[0] != 15
        # its volume, from the label map's voxels and the CT's 3 mm spacing (3,947 voxels)
        seg = model.project.load_sample_array(info["ct_id"], mask=True)
        ml = np.count_nonzero(seg == 2) * 27 / 1000
        assert f"kidney_right {ml:,.1f} ml" in view.info.text() and ml == pytest.approx(106.6, abs=0.1)
        view.set_view("coronal")
        assert view.viewer.dims.current_step[1] == structure_focus(view.layer("labels").data > 0)[1]
        assert nonblank(view.screenshot())
        # previews are oriented as the view shows the scan (patient's right on the left)
        from core.thumbnails import make_thumbnail
        shown = np.asarray(view.layer("image").data)
        np.testing.assert_array_equal(model.thumbnail(info["ct_id"], size=64),
                                      make_thumbnail(shown, size=64, kind="volume"))
        thumb = model.thumbnail(kidney, size=64)
        assert model.structure_name(kidney) == "kidney_right" and model.structure_name(info["ct_id"]) is None
        assert model.thumbnail(kidney, size=64) is thumb  # kept: the strip and the panels reuse it
        np.testing.assert_array_equal(thumb, make_thumbnail(shown, size=64, kind="structure",
                                                            mask=view.layer("labels").data > 0))
        assert thumb.shape != model.thumbnail(info["ct_id"], size=64).shape
        assert thumb.shape != model.thumbnail(liver, size=64).shape
    finally:
        view.close_viewer()
        model.close()
