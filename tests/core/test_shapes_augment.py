"""The inner-ear paper's point augmentation: probability, ranges, and a translation that moves."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.preprocess.augment import (_rotation_matrices, augment_points, augment_points_torch,
                                     compose_affine, sample_affine_params)


def _cloud(n=256, seed=0):
    p = np.random.default_rng(seed).normal(size=(n, 3))
    p -= p.mean(0)
    return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


def _fit_affine(x, y):
    """Least-squares (A, t) with y = x A^T + t."""
    xh = np.concatenate([x, np.ones((len(x), 1))], 1).astype(np.float64)
    sol, *_ = np.linalg.lstsq(xh, y.astype(np.float64), rcond=None)
    return sol[:3].T, sol[3]


def test_probability_of_augmenting():
    pts = np.repeat(_cloud(32)[None], 4000, axis=0)
    out, applied, _, _ = augment_points(pts, np.random.default_rng(0), p=0.8, return_params=True)
    assert abs(applied.mean() - 0.8) < 0.03
    changed = np.abs(out - pts).max(axis=(1, 2)) > 1e-6
    np.testing.assert_array_equal(changed, applied)
    assert np.array_equal(out[~applied], pts[~applied])
    assert not augment_points(pts[:50], 1, p=0.0, return_params=True)[1].any()
    assert augment_points(pts[:50], 1, p=1.0, return_params=True)[1].all()


def test_parameter_ranges():
    prm = sample_affine_params(np.random.default_rng(0), 20_000)
    a = prm["angles_deg"]
    assert a.min() >= -5 and a.max() <= 5 and a.min() < -4.9 and a.max() > 4.9
    s = prm["scales"]
    assert s.min() >= 0.8 and s.max() <= 1.0 and s.min() < 0.81 and s.max() > 0.99
    for key in ("shears", "translations"):
        v = prm[key]
        assert v.min() >= -0.2 and v.max() <= 0.2 and v.min() < -0.19 and v.max() > 0.19
    assert prm["shears"].shape == (20_000, 6) and prm["translations"].shape == (20_000, 3)


def test_composition_is_rotation_shear_scale():
    prm = sample_affine_params(np.random.default_rng(1), 5)
    A, t = compose_affine(prm)
    R = _rotation_matrices(np.deg2rad(prm["angles_deg"]))
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1, atol=1e-12)
    # Rotation by 5 degrees at most about each axis: R stays near the identity.
    assert np.abs(R - np.eye(3)).max() < 0.2
    M = np.linalg.solve(R, A)  # = Sh S: column j is scale_j * (shear column j)
    np.testing.assert_allclose(np.diagonal(M, axis1=1, axis2=2), prm["scales"], atol=1e-12)
    np.testing.assert_allclose(t, prm["translations"])


def test_translation_really_moves_the_points():
    pts = _cloud()
    out, applied, A, t = augment_points(pts, np.random.default_rng(3), p=1.0, return_params=True)
    assert applied
    # The centroid of a centred cloud moves by exactly t (the reference code loses this).
    np.testing.assert_allclose(out.mean(0), t[0], atol=1e-5)
    assert np.linalg.norm(t[0]) > 0.01
    A_fit, t_fit = _fit_affine(pts, out)
    np.testing.assert_allclose(A_fit, A[0], atol=1e-5)
    np.testing.assert_allclose(t_fit, t[0], atol=1e-5)
    # Translation alone, everything else switched off.
    only_t = augment_points(pts, 0, p=1.0, rotation_deg=0.0, scale=(1.0, 1.0), shear=0.0)
    shift = only_t - pts
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-6)
    assert np.abs(shift[0]).max() > 0.0


def test_numpy_is_seeded():
    pts = np.stack([_cloud(seed=i) for i in range(4)])
    a = augment_points(pts, np.random.default_rng(9))
    b = augment_points(pts, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert a.shape == pts.shape and a.dtype == np.float32


def test_torch_batched_version():
    pts = torch.from_numpy(np.stack([_cloud(seed=i) for i in range(2000)])[:, :64])
    g = torch.Generator().manual_seed(0)
    out = augment_points_torch(pts, g, p=0.8)
    assert out.shape == pts.shape and out.dtype == pts.dtype
    moved = (out - pts).abs().amax(dim=(1, 2)) > 1e-6
    assert abs(moved.float().mean().item() - 0.8) < 0.04
    # Each augmented cloud is an affine map within the paper's ranges, translation included.
    shifts = []
    for i in torch.nonzero(moved).flatten()[:200].tolist():
        A, t = _fit_affine(pts[i].numpy(), out[i].numpy())
        assert np.abs(t).max() <= 0.2 + 1e-4
        sv = np.linalg.svd(A, compute_uv=False)
        assert sv.max() < 1.3 and sv.min() > 0.6
        shifts.append(t)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() > 0.15 and np.abs(shifts.mean(0)).max() < 0.03
    # Seeded: the same generator state gives the same result.
    again = augment_points_torch(pts, torch.Generator().manual_seed(0), p=0.8)
    assert torch.equal(out, again)
    with pytest.raises(ValueError):
        augment_points_torch(pts[0])
