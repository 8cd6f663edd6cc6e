"""Point-cloud augmentation of the inner-ear DeepDiffusion paper.

With probability ``p`` (0.8) a cloud gets a random affine map: rotation U(-5, 5) degrees about
each axis, anisotropic scaling U(0.8, 1) per axis, shear U(-0.2, 0.2) (the six off-diagonal
terms) and translation U(-0.2, 0.2) per axis: ``x' = R Sh S x + t``.

The translation is applied explicitly. The public reference code builds a 4x4 homogeneous
matrix and multiplies it with 3-D points without appending the homogeneous 1, which silently
drops the translation column; here the tests check that the points really move.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sample_affine_params", "compose_affine", "augment_points", "augment_points_torch"]

DEFAULTS = dict(rotation_deg=5.0, scale=(0.8, 1.0), shear=0.2, translation=0.2)
# Off-diagonal positions of a 3x3 matrix, in a fixed order for the six shear terms.
_OFFDIAG = (np.array([0, 0, 1, 1, 2, 2]), np.array([1, 2, 0, 2, 0, 1]))


def sample_affine_params(rng, n: int, *, rotation_deg=5.0, scale=(0.8, 1.0), shear=0.2,
                         translation=0.2) -> dict:
    """Draw ``n`` sets of affine parameters (angles in degrees, per-axis scales, 6 shears, shifts)."""
    return {
        "angles_deg": rng.uniform(-rotation_deg, rotation_deg, (n, 3)),
        "scales": rng.uniform(scale[0], scale[1], (n, 3)),
        "shears": rng.uniform(-shear, shear, (n, 6)),
        "translations": rng.uniform(-translation, translation, (n, 3)),
    }


def _rotation_matrices(angles_rad: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles_rad).T
    sx, sy, sz = np.sin(angles_rad).T
    n = len(angles_rad)
    one, zero = np.ones(n), np.zeros(n)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).reshape(n, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).reshape(n, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).reshape(n, 3, 3)
    return rz @ ry @ rx


def compose_affine(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(A n x 3 x 3, t n x 3)`` with ``A = R Sh S`` from ``sample_affine_params`` output."""
    angles = np.deg2rad(np.asarray(params["angles_deg"], dtype=np.float64))
    n = len(angles)
    shear = np.tile(np.eye(3), (n, 1, 1))
    shear[:, _OFFDIAG[0], _OFFDIAG[1]] = params["shears"]
    scale = np.zeros((n, 3, 3))
    scale[:, [0, 1, 2], [0, 1, 2]] = params["scales"]
    A = _rotation_matrices(angles) @ shear @ scale
    return A, np.asarray(params["translations"], dtype=np.float64)


def augment_points(points, rng=None, p: float = 0.8, *, return_params: bool = False, **ranges):
    """Augment one cloud (P x 3) or a batch (B x P x 3); each cloud independently with prob. ``p``.

    ``rng``: numpy Generator or seed. Parameters are drawn for every cloud whether applied or
    not, so the random stream does not depend on the coin flips. ``ranges`` overrides
    ``rotation_deg``, ``scale``, ``shear``, ``translation``. With ``return_params`` also
    returns ``(applied mask, A, t)``.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise ValueError(f"points must be P x 3 or B x P x 3, got shape {pts.shape}")
    single = pts.ndim == 2
    batch = pts[None] if single else pts
    b = len(batch)
    applied = rng.random(b) < p
    A, t = compose_affine(sample_affine_params(rng, b, **{**DEFAULTS, **ranges}))
    A[~applied] = np.eye(3)
    t[~applied] = 0.0
    out = (np.einsum("bij,bpj->bpi", A, batch.astype(np.float64)) + t[:, None, :]).astype(np.float32)
    out = out[0] if single else out
    if return_params:
        return out, (applied[0] if single else applied), A, t
    return out


def augment_points_torch(points, generator=None, p: float = 0.8, **ranges):
    """Batched torch version for training loops: ``points`` B x P x 3 on any device.

    Random numbers come from ``generator`` (a CPU ``torch.Generator``; None = global RNG) and
    the maps are built on the points' device, so a seeded run repeats exactly.
    """
    import torch

    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be B x P x 3, got shape {tuple(points.shape)}")
    r = {**DEFAULTS, **ranges}
    b = points.shape[0]

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    applied = torch.rand(b, generator=generator, dtype=torch.float64) < p
    ang = torch.deg2rad(uniform(-r["rotation_deg"], r["rotation_deg"], b, 3))
    scales = uniform(r["scale"][0], r["scale"][1], b, 3)
    shears = uniform(-r["shear"], r["shear"], b, 6)
    trans = uniform(-r["translation"], r["translation"], b, 3)

    c, s = torch.cos(ang), torch.sin(ang)
    one, zero = torch.ones(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    rot = rz.view(b, 3, 3) @ ry.view(b, 3, 3) @ rx.view(b, 3, 3)
    sh = torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)
    sh[:, torch.as_tensor(_OFFDIAG[0]), torch.as_tensor(_OFFDIAG[1])] = shears
    A = rot @ sh @ torch.diag_embed(scales)
    eye = torch.eye(3, dtype=torch.float64).expand(b, 3, 3)
    A = torch.where(applied[:, None, None], A, eye)
    trans = torch.where(applied[:, None], trans, torch.zeros_like(trans))
    A = A.to(device=points.device, dtype=points.dtype)
    trans = trans.to(device=points.device, dtype=points.dtype)
    return points @ A.transpose(1, 2) + trans[:, None, :]
