"""A first map without training (issue 14 item 3): right after an import, the baseline
embedding is computed in the background, so the scatter, neighbours and clusters work at once.
Real data: BreastMNIST (780 ultrasound images, PCA of pixels) and AdrenalMNIST3D shapes
(the untrained PointNet)."""
import numpy as np

from tests.conftest import DATA, need


def test_first_map_right_after_import(qtbot, tmp_path):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from core.project import Project

    src = need(DATA / "breastmnist" / "breastmnist.npz")
    Project.create(tmp_path / "p").close()
    win = MainWindow(ProjectModel.open(tmp_path / "p"), optional_panels=False)
    qtbot.addWidget(win)
    win.show()
    assert win.model.embedding() is None
    win.import_sources([src])
    qtbot.waitUntil(lambda: win.model.active_run is not None and not win.jobs, timeout=300_000)
    project = win.model.project
    run = project.run(win.model.active_run)
    assert run["method"] == "baseline-pca" and run["status"] == "finished"
    ids, emb = win.model.embedding()
    assert len(ids) == 780 and emb.shape[1] >= 2 and np.isfinite(emb).all()
    assert win.model.projection("pca") is not None and win.model.active_clustering
    # the neighbours strip works at once
    sid = str(ids[0])
    win.selection.select([sid], current=sid)
    qtbot.waitUntil(lambda: win.neighbours_view.result is not None, timeout=10_000)
    assert len(win.neighbours_view.result.neighbours) == win.neighbours_view.k.value()
    # once per project: opening again does not recompute it
    from core.workflows.baseline import has_baseline

    assert has_baseline(project) and win.start_first_map() is None
    win.close()


def test_baselines_follow_sklearn_conventions_and_pointnet_spreads_shapes(tmp_path):
    from core.dataset import SampleSet
    from core.metrics.collapse import embedding_health
    from core.preprocess.shapes import compute_points  # noqa: F401 - the points pipeline exists
    from core.workflows.baseline import PixelPCA, UntrainedPointNet, _downsample

    npz = np.load(need(DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"))
    vols = np.asarray(npz["train_images"][:40], dtype=np.float32)
    # block averaging against a float64 oracle
    small = _downsample(vols, 32)
    oracle = vols.astype(np.float64).reshape(40, 32, 2, 32, 2, 32, 2).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(small, oracle, rtol=1e-5, atol=1e-6)
    pca = PixelPCA(input_kind="volume", n_components=8)
    assert pca.fit(SampleSet(ids=np.arange(40).astype(str), x=vols)) is pca
    z = pca.transform(vols)
    assert z.shape == (40, 8) and z.dtype == np.float32 and not embedding_health(z).collapsed
    # the map is the fitted projection (float64 oracle of it), and it survives the run's
    # checkpoint (tensors only) so new cases are placed with it
    rows = pca._rows(vols).astype(np.float64)
    ref = (rows - pca.mean_.astype(np.float64)) @ pca.components_.astype(np.float64).T
    np.testing.assert_allclose(z, ref, atol=1e-4 * np.abs(ref).max())
    from core.jobs.checkpoint import load_checkpoint, save_checkpoint
    save_checkpoint(tmp_path / "pca.pt", pca.state_dict())
    again = PixelPCA.from_checkpoint(load_checkpoint(tmp_path / "pca.pt"))
    assert again.input_kind == "volume" and np.array_equal(again.transform(vols), z)
    # point clouds: surface points of the same masks, through the untrained PointNet
    from skimage.measure import marching_cubes

    pts = []
    rng = np.random.default_rng(0)
    for v in vols[:16]:
        verts = marching_cubes(v, 0.5)[0]
        p = verts[rng.choice(len(verts), 1024)]
        p = (p - p.mean(0)) / np.abs(p - p.mean(0)).max()
        pts.append(p.astype(np.float32))
    pts = np.stack(pts)
    net = UntrainedPointNet(out_dim=64)
    data = SampleSet(ids=np.arange(16).astype(str), x=pts)
    assert net.fit(data) is net
    f = net.transform(data)
    assert f.shape == (16, 64) and not embedding_health(f).collapsed
    save_checkpoint(tmp_path / "net.pt", net.state_dict())
    g = UntrainedPointNet.from_checkpoint(tmp_path / "net.pt").transform(data)
    cos = (f * g).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(g, axis=1)
    assert cos.min() > 0.9999   # the same encoder and BatchNorm statistics after the round trip
