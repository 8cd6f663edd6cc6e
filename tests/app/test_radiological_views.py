"""Medical viewing conventions (issue 14 item 8) on the real TotalSegmentator CT: radiological
orientation from the image geometry (no rotation by 180 degrees: anterior at the top, the
patient's left on screen-right), orientation letters, axial/coronal/sagittal views; a clear
message instead of an exception for a sample without an image."""
import numpy as np


def test_orientation_from_geometry_matches_physical_coordinates(model):
    from core.orientation import apply_transform, radiological_transform

    ct = model.samples[model.samples["kind"] == "volume"].index[0]
    geom = model.samples.at[ct, "geometry"]
    data = np.asarray(model.project.load_sample_array(ct))
    tf = radiological_transform(geom, 3)
    assert tf is not None
    out = apply_transform(data, tf)
    # physical LPS coordinate of array index (z, y, x): origin + D @ (spacing * (x, y, z))
    D = np.asarray(geom["direction"], dtype=np.float64).reshape(3, 3)
    sp = np.asarray(geom["spacing"], dtype=np.float64)

    def lps(idx_zyx):
        z, y, x = idx_zyx
        return D @ (sp * np.array([x, y, z], dtype=np.float64))

    # walk each displayed axis of the reoriented array in the source array's index space
    perm, flips = tf
    shape = data.shape

    def source_index(out_idx):
        src = [0, 0, 0]
        for t, a in enumerate(perm):
            src[a] = out_idx[t]
        for a in flips:
            src[a] = shape[a] - 1 - src[a]
        return src

    base = lps(source_index((0, 0, 0)))
    step_rows = lps(source_index((0, 1, 0))) - base   # screen down in the axial view
    step_cols = lps(source_index((0, 0, 1))) - base   # screen right
    step_slices = lps(source_index((1, 0, 0))) - base
    assert step_rows[1] > 0            # down the screen = posterior: anterior at the top
    assert step_cols[0] > 0            # right on the screen = patient's left (radiological)
    assert step_slices[2] < 0          # increasing slice = inferior: superior at the top of coronal/sagittal
    for idx in ((0, 0, 0), (3, 40, 17), (29, 100, 121)):
        assert out[idx] == data[tuple(source_index(idx))]


def test_three_views_with_markers_and_mesh_message(qtbot, model):
    from app._qt.image_view import ImageView
    from app.components import Selection

    sel = Selection()
    iv = ImageView(model, sel)
    qtbot.addWidget(iv)
    iv.resize(600, 500)
    iv.show()
    ct = model.samples[model.samples["kind"] == "volume"].index[0]
    with qtbot.waitSignal(iv.shown, timeout=20_000):
        sel.select([ct], current=ct)
    assert iv.markers() == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    iv.set_preset("abdomen")
    assert iv.layer("image").contrast_limits == [-125.0, 225.0]
    iv.set_view("coronal")
    assert tuple(iv.viewer.dims.order) == (1, 0, 2)
    assert iv.markers() == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    iv.set_view("sagittal")
    assert iv.markers()["left"] == "A" and tuple(iv.viewer.dims.order) == (2, 0, 1)
    # the label map overlay is reoriented with the image
    if iv.layer("labels") is not None:
        assert iv.layer("labels").data.shape == iv.layer("image").data.shape
    iv.mode3d.setChecked(True)
    assert iv.markers() == {}  # no letters in the 3D rendering


def test_mesh_dock_hidden_without_shapes(qtbot, tmp_path):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from core.io.importer import import_source
    from core.project import Project
    from tests.conftest import DATA, need

    p = Project.create(tmp_path / "ct")
    import_source(p, [need(DATA / "totalseg_example" / "example_ct_sm.nii.gz")])
    p.close()
    win = MainWindow(ProjectModel.open(tmp_path / "ct"), optional_panels=False)
    qtbot.addWidget(win)
    win.show()
    assert win.docks["Mesh"].isHidden() and not win.docks["Image"].isHidden()
    win.cancel_jobs()
    win.close()
