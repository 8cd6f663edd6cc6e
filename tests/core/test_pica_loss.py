"""PICA's PUI loss against the reference (Raymond-sci/PICA) and the L_SD prior against its formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import REFERENCE, load_reference
from core.methods.pica import pui_loss


def _pui_cases():
    # every pica_pui_* case present (kept-back cases, e.g. repeat3 / overcluster, run when added)
    names = sorted(p.name for p in REFERENCE.glob("pica_pui_*.npz")) if REFERENCE.exists() else []
    return names or ["pica_pui_basic.npz"]


@pytest.mark.parametrize("name", _pui_cases())
def test_pui_loss_matches_reference(name):
    d = load_reference(name)
    lo = torch.tensor(d["logits_orig"], requires_grad=True)
    lp = torch.tensor(d["logits_pert"], requires_grad=True)
    assert lp.shape[0] == lo.shape[0] * int(d["nrepeat"])
    loss, l_pui, l_ne = pui_loss(lo, lp, lam=float(d["lamda"]), prior="entropy")
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-5, abs=1e-6)
    assert l_pui.item() == pytest.approx(float(d["loss_pui_ce"]), rel=1e-5, abs=1e-6)
    assert l_ne.item() == pytest.approx(float(d["loss_ne"]), rel=1e-4, abs=1e-6)
    go, gp = torch.autograd.grad(loss, [lo, lp])
    np.testing.assert_allclose(go.numpy(), d["grad_logits_orig"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gp.numpy(), d["grad_logits_pert"], rtol=1e-4, atol=1e-6)


def test_lambda_zero_is_the_pui_term_alone():
    d = load_reference("pica_pui_basic.npz")
    loss, l_pui, _ = pui_loss(torch.tensor(d["logits_orig"]), torch.tensor(d["logits_pert"]), lam=0.0)
    assert loss.item() == pytest.approx(float(d["loss_pui_ce"]), rel=1e-6)


@pytest.mark.parametrize("alpha,key", [(1.5, "1p5"), (2.0, "2p0"), (5.0, "5p0")])
def test_dirichlet_prior_matches_formula(alpha, key):
    s = load_reference("pica_sdprior_formula.npz")
    d = load_reference("pica_pui_basic.npz")
    lo = torch.tensor(s["logits_orig"], requires_grad=True)
    lam = 2.0
    loss, l_pui, l_sd = pui_loss(lo, torch.tensor(d["logits_pert"]), lam=lam, prior="dirichlet", alpha=alpha)
    assert l_sd.item() == pytest.approx(float(s[f"loss_alpha{key}"]), rel=1e-5)
    assert loss.item() == pytest.approx(l_pui.item() + lam * float(s[f"loss_alpha{key}"]), rel=1e-5)
    (g,) = torch.autograd.grad(l_sd, [lo])
    np.testing.assert_allclose(g.numpy(), s[f"grad_logits_orig_alpha{key}"], rtol=1e-4, atol=1e-7)


def test_entropy_prior_on_the_same_z_as_the_dirichlet_formula():
    s = load_reference("pica_sdprior_formula.npz")
    lo = torch.tensor(s["logits_orig"])
    _, _, l_ne = pui_loss(lo, lo, prior="entropy")
    assert l_ne.item() == pytest.approx(float(s["pica_loss_ne_same_z"]), rel=1e-5)


def _numpy_pui(lo, lp, lam):
    """The reference semantics written out: tile softmax(orig) r times, cosine between cluster
    columns, cross entropy against the diagonal, log K + sum p log p on the originals."""
    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    r = len(lp) // len(lo)
    x, y = np.tile(softmax(lo.astype(np.float64)), (r, 1)), softmax(lp.astype(np.float64))
    k = x.shape[1]
    p = x.sum(0) / x.sum()
    ne = math.log(k) + (p * np.log(p)).sum()
    m = (x / np.linalg.norm(x, axis=0)).T @ (y / np.linalg.norm(y, axis=0))
    ce = np.mean(np.log(np.exp(m).sum(1)) - np.diag(m))
    return ce + lam * ne, ce, ne


@pytest.mark.parametrize("n,k,r", [(4, 5, 3), (16, 10, 1), (6, 3, 2)])
def test_repeated_perturbations_tile_the_originals(n, k, r):
    rng = np.random.default_rng(n * 100 + k * 10 + r)
    lo = rng.normal(0, 2, (n, k)).astype(np.float32)
    lp = rng.normal(0, 2, (n * r, k)).astype(np.float32)
    want = _numpy_pui(lo, lp, 2.0)
    got = pui_loss(torch.tensor(lo), torch.tensor(lp), lam=2.0)
    for g, w in zip(got, want):
        assert g.item() == pytest.approx(w, rel=1e-5, abs=1e-6)


def test_bad_shapes_and_prior_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        pui_loss(torch.zeros(4, 3), torch.zeros(6, 3))
    with pytest.raises(ValueError, match="n x K"):
        pui_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="prior"):
        pui_loss(torch.zeros(4, 3), torch.zeros(4, 3), prior="uniform")
