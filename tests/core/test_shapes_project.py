"""compute_points over a project: masks and meshes -> one ``points`` array, failures reported."""
from __future__ import annotations

import numpy as np
import pytest

from core.jobs import Progress
from core.jobs.steps import run_to_end
from core.preprocess.shapes import _array_spacing, compute_points
from core.project import Project, SampleRecord
from tests.conftest import DATA, need


def _run(gen):
    """Drain a generator; return (yielded items, return value)."""
    out = []
    return out, run_to_end(gen, out.append)


@pytest.fixture()
def project(tmp_path):
    import trimesh

    with np.load(need(DATA / "vesselmnist3d/vesselmnist3d.npz"), allow_pickle=False) as z:
        images = z["train_images"]
    sizes = (images > 0).reshape(len(images), -1).sum(1)
    pick = np.concatenate([np.argsort(sizes)[:4], np.arange(0, len(images), 150)])
    masks = np.concatenate([images[pick], np.zeros((1, 28, 28, 28), np.uint8)])  # last one empty
    proj = Project.create(tmp_path / "proj")
    rel = proj.save_sample_array("data/vessel/train_images.npy", masks)
    recs = [SampleRecord(id=f"vessel/train/{int(i):05d}", dataset="vessel", kind="mask", split="train",
                         shape=(28, 28, 28), data_file=rel, data_index=k)
            for k, i in enumerate(pick)]
    recs.append(SampleRecord(id="vessel/empty", dataset="vessel", kind="mask", shape=(28, 28, 28),
                             data_file=rel, data_index=len(pick)))
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    proj.arrays.save("meshes/ball", sphere.vertices.astype(np.float32), faces=sphere.faces)
    proj.arrays.save("meshes/nofaces", sphere.vertices.astype(np.float32),
                     faces=np.zeros((0, 3), np.int64))
    recs += [SampleRecord(id="ball", dataset="meshes", kind="mesh"),
             SampleRecord(id="nofaces", dataset="meshes", kind="mesh")]
    proj.add_samples(recs)
    yield proj, [r.id for r in recs]
    proj.close()


def test_compute_points_on_project(project):
    proj, ids = project
    progress, failures = _run(compute_points(proj, n_points=1024, seed=0))
    assert all(isinstance(p, Progress) for p in progress)
    assert len(progress) == len(ids) + 1  # one per sample, then the summary
    assert progress[-2].step == len(ids) and progress[-2].steps_per_epoch == len(ids)
    failed = dict(failures)
    assert set(failed) == {"vessel/empty", "nofaces"}
    assert "empty" in failed["vessel/empty"] and "no faces" in failed["nofaces"]
    summary = progress[-1].message
    assert "vessel/empty" in summary and "nofaces" in summary and "2 skipped" in summary
    stored_ids, pts = proj.arrays.load("points")
    good = [i for i in ids if i not in failed]
    assert list(stored_ids) == good
    assert pts.shape == (len(good), 1024, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=2).max(1), 1, atol=1e-5)
    # Masks got their meshes saved in the importer's layout; the sphere stays a sphere.
    mesh = proj.arrays.load_extra(f"meshes/{good[0]}")
    assert mesh["data"].shape[1] == 3 and mesh["faces"].shape[1] == 3 and len(mesh["faces"]) > 0
    ball = pts[good.index("ball")]
    assert np.linalg.norm(ball, axis=1).min() > 0.9  # faceted sphere: faces lie a little inside
    # The core SampleSet reader sees them.
    from core.dataset import from_project

    ss = from_project(proj, kind="points")
    assert ss.x.shape == (len(good), 1024, 3)


def test_recompute_subset_keeps_other_rows_and_is_deterministic(project):
    proj, ids = project
    _run(compute_points(proj))
    ids0, pts0 = proj.arrays.load("points")
    sub = [ids[0], "ball", "vessel/empty"]
    progress, failures = _run(compute_points(proj, ids=sub))
    assert [f[0] for f in failures] == ["vessel/empty"]
    ids1, pts1 = proj.arrays.load("points")
    assert sorted(ids1) == sorted(ids0)
    pos1 = {s: i for i, s in enumerate(ids1)}
    for k, s in enumerate(ids0):
        np.testing.assert_array_equal(pts0[k], pts1[pos1[s]])  # per-sample seeds: same points
    # Samples of other kinds are reported, not silently dropped.
    proj.add_samples([SampleRecord(id="img", kind="image2d")])
    _, failures = _run(compute_points(proj, ids=["img"]))
    assert failures and "image2d" in failures[0][1]


def test_spacing_from_geometry():
    assert _array_spacing({"spacing": [0.5, 0.7, 3.0], "array_spacing": [3.0, 0.7, 0.5]}) == (3.0, 0.7, 0.5)
    assert _array_spacing({"spacing": [0.5, 0.7, 3.0]}) == (3.0, 0.7, 0.5)
    assert _array_spacing({}) == (1.0, 1.0, 1.0)


def test_unknown_ids_and_early_close(project):
    proj, ids = project
    _, failures = _run(compute_points(proj, ids=["nope", ids[0]]))
    assert failures == [("nope", "no such sample in the project")]
    proj.arrays.delete("points")
    gen = compute_points(proj)
    for _ in range(3):
        next(gen)
    gen.close()  # a cancelled job: the three clouds done so far are kept
    stored, pts = proj.arrays.load("points")
    assert list(stored) == ids[:3] and pts.shape == (3, 1024, 3)


def test_organ_of_a_ct_label_map(tmp_path):
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(need(DATA / "totalseg_example/example_ct_sm.nii.gz")))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(need(DATA / "totalseg_example/example_seg.nii.gz"))))
    proj = Project.create(tmp_path / "ct")
    data = proj.save_sample_array("data/ct.npy", sitk.GetArrayFromImage(ct))
    mask = proj.save_sample_array("data/ct.mask.npy", seg)
    geometry = {"spacing": [3.0, 3.0, 3.0], "array_spacing": [3.0, 3.0, 3.0]}
    proj.add_samples([SampleRecord(id="ct", kind="volume", shape=seg.shape, geometry=geometry,
                                   data_file=data, mask_file=mask)])
    _, failures = _run(compute_points(proj, ids=["ct"]))
    assert failures and "label=" in failures[0][1]
    _, failures = _run(compute_points(proj, label=5))  # liver
    assert failures == []
    mesh = proj.arrays.load_extra("meshes/ct")
    import trimesh

    vol = trimesh.Trimesh(mesh["data"], mesh["faces"], process=False).volume
    assert vol == pytest.approx((seg == 5).sum() * 27.0, rel=0.1)  # mm^3: spacing applied
    assert proj.arrays.load("points")[1].shape == (1, 1024, 3)
    proj.close()
