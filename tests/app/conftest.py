"""A small real project for the app tests, built once per session from ../shared/data:
60 AdrenalMNIST3D 64^3 shape masks (train/val/test, normal/hyperplasia) with their meshes and
1024-point clouds, the TotalSegmentator CT with its organ label map (imported with the real
importer), an embedding, its PCA, a k-means clustering and Algorithm-1 label vectors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import DATA, need

N_PER_SPLIT = {"train": 40, "val": 10, "test": 10}
CLASSES = ["normal", "hyperplasia"]


def _shape_features(points: np.ndarray) -> np.ndarray:
    """Order-free descriptors of each point cloud: radial histogram and inertia spectrum."""
    feats = []
    for p in points:
        r = np.linalg.norm(p - p.mean(0), axis=1)
        hist = np.histogram(r, bins=16, range=(0, 1))[0] / len(p)
        ev = np.sort(np.linalg.eigvalsh(np.cov(p.T)))[::-1]
        feats.append(np.concatenate([hist, ev / ev.sum(), [r.mean(), r.std()]]))
    return np.asarray(feats, dtype=np.float32)


def build_project(path) -> dict:
    from core.cluster import kmeans
    from core.project import Project, SampleRecord, make_id
    from core.projection import pca_project

    npz = np.load(need(DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"))
    project = Project.create(path, name="adrenal-test")
    for c in CLASSES:
        project.add_label(c)
    records = []
    for split, n in N_PER_SPLIT.items():
        imgs = np.asarray(npz[f"{split}_images"][:n])
        labs = np.asarray(npz[f"{split}_labels"][:n, 0])
        rel = project.save_sample_array(f"data/adrenal/{split}_images.npy", imgs)
        for i in range(n):
            records.append(SampleRecord(
                id=make_id("adrenalmnist3d_64", split, str(i)), dataset="adrenalmnist3d", modality="CT",
                kind="mask", split=split, shape=imgs.shape[1:], data_file=rel, data_index=i,
                metadata={"index": i}, labels=[CLASSES[int(labs[i])]] if split != "test" else []))
    project.add_samples(records)

    # CT volume with its label map, through the real importer
    from core.io.importer import import_source

    ts = need(DATA / "totalseg_example")
    import_source(project, [ts / "example_ct_sm.nii.gz", ts / "example_seg.nii.gz"])
    ct_id = project.samples(kind="volume")["id"].iloc[0]
    ct = project.load_sample_array(ct_id).astype(np.float32)
    # a residual map for the overlay: distance of each voxel from its 3x3x3 mean
    from scipy.ndimage import uniform_filter

    project.arrays.save(f"residuals/{ct_id}", np.abs(ct - uniform_filter(ct, 3)).astype(np.float32))

    # meshes and 1024 points of every mask, through the shapes pipeline
    from core.preprocess.shapes import compute_points

    mask_ids = [r.id for r in records]
    for _ in compute_points(project, ids=mask_ids):
        pass
    ids, pts = project.arrays.load("points")
    ids = [str(i) for i in ids]

    emb = _shape_features(pts)
    run = project.create_run("fixture-shape-features", {"features": "radial histogram + inertia"})
    project.update_run(run, status="finished", finished=True)
    name = f"run-{run:04d}"
    project.arrays.save(f"embeddings/{name}", emb, ids=ids)
    split = project.samples(ids=ids)["split"].to_numpy()
    project.arrays.save(f"projections/{name}-pca", pca_project(emb, fit_mask=split == "train"), ids=ids)
    assign = kmeans(emb, 4, seed=0)
    cname = f"{name}-kmeans4"
    project.save_clustering(cname, ids, assign, run_id=run)
    # Algorithm 1 with the train split as development set: mean dev labels per cluster
    project.set_dev([i for i, s in zip(ids, split) if s == "train"], True, author="fixture")
    y = project.label_matrix(ids, CLASSES)
    dev = split == "train"
    vectors, counts = {}, {}
    for k in np.unique(assign):
        m = (assign == k) & dev
        counts[int(k)] = int(m.sum())
        if m.any():
            vectors[int(k)] = {c: float(y[m, j].mean()) for j, c in enumerate(CLASSES)}
    project.save_cluster_vectors(cname, vectors, counts)
    project.set_meta("active_run", str(run))
    project.set_meta("active_clustering", cname)
    # the fixture's own edits are not user history
    project.query("DELETE FROM history")
    project.close()
    return {"mask_ids": mask_ids, "ct_id": ct_id, "run": run, "clustering": cname}


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "adrenal-project"
    info = build_project(path)
    return path, info


@pytest.fixture
def project_copy(built_project, tmp_path):
    """A fresh copy per test, so label edits in one test never leak into another."""
    src, info = built_project
    dst = tmp_path / "project"
    shutil.copytree(src, dst)
    return dst, info


@pytest.fixture
def model(project_copy):
    from app.components import ProjectModel

    m = ProjectModel.open(project_copy[0], author="tester")
    yield m
    try:
        m.close()
    except Exception:
        pass


def nonblank(img: np.ndarray, min_std: float = 3.0) -> bool:
    """An image that is not one flat colour (grey levels vary by more than ``min_std``)."""
    a = np.asarray(img)[..., :3].astype(np.float32)
    return float(a.std()) > min_std


@pytest.fixture(autouse=True)
def _no_window_waits_from_another_test():
    """A main window one test left unpainted would defer the next test's panel set-up forever
    (``app._qt.after_paint`` keeps module state): start and end each test with none."""
    from app._qt import after_paint

    after_paint.reset()
    yield
    after_paint.reset()


@pytest.fixture(autouse=True)
def _user_folder_of_the_test(tmp_path_factory, monkeypatch):
    """The app's per-user files (recent projects, the sample project) go to a folder of the
    test run, never to the developer's own home."""
    monkeypatch.setenv("LATENTMAP_DATA_HOME", str(tmp_path_factory.getbasetemp() / "user-data"))
