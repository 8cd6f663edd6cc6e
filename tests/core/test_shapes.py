"""Mask -> mesh -> points on real MedMNIST 3-D masks, and the sampler's statistics."""
from __future__ import annotations

import numpy as np
import pytest

from core.preprocess.shapes import (face_areas, largest_component, mask_to_mesh, mask_to_points,
                                    normalise_points, sample_surface)
from tests.conftest import DATA, need


def _load(name, key="train_images"):
    with np.load(need(DATA / name), allow_pickle=False) as z:
        return z[key]


@pytest.fixture(scope="module")
def adrenal64():
    return _load("adrenalmnist3d/adrenalmnist3d_64.npz")


@pytest.fixture(scope="module")
def vessel():
    with np.load(need(DATA / "vesselmnist3d/vesselmnist3d.npz"), allow_pickle=False) as z:
        return np.concatenate([z["train_images"], z["val_images"], z["test_images"]])


def _check_closed_mesh(verts, faces):
    import trimesh

    assert verts.dtype == np.float32 and verts.shape[1] == 3
    assert faces.dtype == np.int64 and faces.shape[1] == 3 and len(faces) > 0
    assert faces.min() >= 0 and faces.max() < len(verts)
    tm = trimesh.Trimesh(verts, faces, process=False)
    assert tm.is_watertight
    assert tm.volume > 0  # outward winding


def _check_cloud(p, n=1024):
    assert p.shape == (n, 3) and p.dtype == np.float32
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.mean(0), 0, atol=1e-5)
    assert np.linalg.norm(p, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    assert len(np.unique(p, axis=0)) > n * 0.99  # really spread, not one point repeated


def test_adrenal64_masks_give_meshes_and_1024_points(adrenal64):
    for i in range(0, len(adrenal64), 120):
        m = adrenal64[i]
        verts, faces = mask_to_mesh(m)
        _check_closed_mesh(verts, faces)
        # The mesh overlays the mask: its bounds are the foreground's bounds +- half a voxel.
        idx = np.argwhere(largest_component(m > 0))
        np.testing.assert_allclose(verts.min(0), idx.min(0) - 0.5, atol=1e-4)
        np.testing.assert_allclose(verts.max(0), idx.max(0) + 0.5, atol=1e-4)
        _check_cloud(mask_to_points(m, seed=i))


def test_vessel_masks_including_the_smallest(vessel):
    sizes = (vessel > 0).reshape(len(vessel), -1).sum(1)
    order = np.argsort(sizes)
    assert sizes[order[0]] <= 10  # the set really has masks of a few voxels
    for i in list(order[:8]) + list(order[-2:]) + list(range(0, len(vessel), 400)):
        verts, faces = mask_to_mesh(vessel[i])
        _check_closed_mesh(verts, faces)
        _check_cloud(mask_to_points(vessel[i]))


def test_single_voxel_and_border_touching_masks():
    m = np.zeros((4, 4, 4), bool)
    m[0, 0, 0] = True  # at the corner: the padding must close the surface
    verts, faces = mask_to_mesh(m)
    _check_closed_mesh(verts, faces)
    _check_cloud(mask_to_points(m))
    prob = np.zeros((5, 5, 5), np.float32)
    prob[2, 2, 2], prob[0, 0, 0] = 0.9, 0.2  # probability map: foreground where > 0.5
    verts, _ = mask_to_mesh(prob)
    np.testing.assert_allclose(verts.min(0), [1.5] * 3)
    full = np.ones((3, 5, 4), np.uint8)
    verts, faces = mask_to_mesh(full, spacing=(2.0, 1.0, 0.5))
    _check_closed_mesh(verts, faces)
    np.testing.assert_allclose(verts.min(0), [-1.0, -0.5, -0.25], atol=1e-5)
    np.testing.assert_allclose(verts.max(0), [5.0, 4.5, 1.75], atol=1e-5)


def test_backends_agree(adrenal64):
    v1, f1 = mask_to_mesh(adrenal64[3], backend="vtk")
    v2, f2 = mask_to_mesh(adrenal64[3], backend="skimage")
    a1, a2 = face_areas(v1, f1).sum(), face_areas(v2, f2).sum()
    assert a1 == pytest.approx(a2, rel=0.02)  # ambiguous cubes are resolved differently
    np.testing.assert_allclose(v1.min(0), v2.min(0), atol=1e-4)


def test_largest_component_is_kept():
    m = np.zeros((20, 20, 20), bool)
    m[2:8, 2:8, 2:8] = True      # 216 voxels
    m[12:14, 12:14, 12:14] = True  # 8 voxels, separate
    verts, _ = mask_to_mesh(m)
    assert verts.max() < 9
    verts_all, _ = mask_to_mesh(m, largest_component=False)
    assert verts_all.max() > 13
    # Diagonal contact counts as connected (26-connectivity), as thin vessels need.
    d = np.zeros((5, 5, 5), bool)
    d[1, 1, 1] = d[2, 2, 2] = d[3, 3, 3] = True
    assert largest_component(d).sum() == 3


def test_empty_mask_raises_clear_error():
    with pytest.raises(ValueError, match="sample-7.*empty"):
        mask_to_points(np.zeros((8, 8, 8), np.uint8), name="sample-7")
    with pytest.raises(ValueError, match="3-D"):
        mask_to_mesh(np.ones((8, 8), bool))


def test_mesh_without_faces_raises_clear_error():
    verts = np.random.default_rng(0).random((5, 3))
    with pytest.raises(ValueError, match="m1.*no faces"):
        sample_surface(verts, np.zeros((0, 3), np.int64), name="m1")
    with pytest.raises(ValueError, match="zero area"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="vertex"):
        sample_surface(verts, np.array([[0, 1, 9]]))


def test_area_weighting_two_triangles():
    # Triangle B has 100x the area of triangle A, in disjoint places: ~100x more points on B.
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0],
                      [5, 0, 0], [15, 0, 0], [5, 10, 0]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    np.testing.assert_allclose(face_areas(verts, faces), [0.5, 50.0])
    n = 101_000
    pts = sample_surface(verts, faces, n, seed=1)
    on_a = int((pts[:, 0] < 2).sum())
    expected = n / 101
    # Binomial sd = sqrt(n p (1-p)) ~ 31.5; allow 5 sd.
    assert abs(on_a - expected) < 5 * np.sqrt(n * (1 / 101) * (100 / 101))
    # Points lie inside their triangles.
    a = pts[pts[:, 0] < 2]
    assert (a[:, 0] >= -1e-6).all() and (a[:, 1] >= -1e-6).all() and (a[:, 0] + a[:, 1] <= 1 + 1e-6).all()
    assert np.abs(pts[:, 2]).max() == 0


def test_uniform_within_a_triangle():
    # Equal-area sub-regions of a triangle get equal counts (chi-square over 4 midpoint triangles).
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    pts = sample_surface(verts, np.array([[0, 1, 2]]), 40_000, seed=3)
    x, y = pts[:, 0], pts[:, 1]
    region = np.where(x > 0.5, 0, np.where(y > 0.5, 1, np.where(x + y < 0.5, 2, 3)))
    counts = np.bincount(region, minlength=4)
    chi2 = ((counts - 10_000) ** 2 / 10_000).sum()
    assert chi2 < 16.3  # p = 0.001 for 3 degrees of freedom


def test_sphere_sampling_is_on_surface_and_uniform():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=2.0)
    pts = sample_surface(sphere.vertices, sphere.faces, 20_000, seed=0)
    r = np.linalg.norm(pts, axis=1)
    assert r.max() <= 2.0 + 1e-5 and r.min() > 1.99  # on the (faceted) sphere
    # Uniform on the sphere: z is uniform on [-r, r] (Archimedes), so 8 z-slabs get equal counts.
    counts, _ = np.histogram(pts[:, 2], bins=8, range=(-2, 2))
    chi2 = ((counts - 2500) ** 2 / 2500).sum()
    assert chi2 < 24.3  # p = 0.001 for 7 degrees of freedom
    assert np.abs(pts.mean(0)).max() < 0.05


def test_seeding():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    a = sample_surface(s.vertices, s.faces, 100, seed=5)
    b = sample_surface(s.vertices, s.faces, 100, seed=5)
    c = sample_surface(s.vertices, s.faces, 100, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_normalise_points():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(500, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    q = normalise_points(p)
    np.testing.assert_allclose(q.mean(0), 0, atol=1e-6)
    assert np.linalg.norm(q, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    # Shape is kept: a similarity transform of the input.
    d_p = np.linalg.norm(p[1:] - p[0], axis=1)
    d_q = np.linalg.norm(q[1:] - q[0], axis=1)
    np.testing.assert_allclose(d_q / d_p, d_q[0] / d_p[0], rtol=1e-4)
    batch = normalise_points(np.stack([p, 2 * p + 1]))
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-5)
    with pytest.raises(ValueError, match="coincide"):
        normalise_points(np.ones((4, 3)))
