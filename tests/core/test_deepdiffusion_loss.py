"""LMR loss against the reference vectors (takahikof TF code and the paper's formula)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import REFERENCE, load_reference
from core.methods.deepdiffusion import lmr_loss

VARIANTS = {"tf": "reference", "formula": "paper"}


def _cases():
    names = sorted(p.name for p in REFERENCE.glob("deepdiffusion_*.npz")) if REFERENCE.exists() else []
    cases = [n for n in names if n.split("_")[1] in VARIANTS]
    return cases or ["deepdiffusion_tf_init.npz", "deepdiffusion_formula_init.npz"]


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def assert_same_loss_and_grads(ours, oracle, h0, memory0):
    """Loss and gradients w.r.t. h and the memory agree to float64 precision."""
    out = []
    for fn in (ours, oracle):
        hh, mm = h0.clone().requires_grad_(), memory0.clone().requires_grad_()
        loss = fn(hh, mm)
        out.append((loss.item(), *torch.autograd.grad(loss, [hh, mm])))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-10)
    assert torch.allclose(out[0][1], out[1][1], rtol=1e-8, atol=1e-12)
    assert torch.allclose(out[0][2], out[1][2], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", _cases())
def test_loss_matches_reference(name):
    d = load_reference(name)
    variant = VARIANTS[name.split("_")[1]]
    h = torch.tensor(d["h"], dtype=torch.float32, requires_grad=True)
    memory = torch.tensor(d["M"], dtype=torch.float32, requires_grad=True)
    loss, fit, smooth = lmr_loss(h, memory, torch.as_tensor(d["source_idx"]), int(d["k"]),
                                 float(d["lam"]), variant=variant)
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-5)
    assert fit.item() == pytest.approx(float(d["loss_fitting"]), rel=1e-5)
    assert smooth.item() == pytest.approx(float(d["loss_smoothness"]), rel=1e-5, abs=1e-6)
    gh, gm = torch.autograd.grad(loss, [h, memory])
    assert _rel(gh.numpy(), d["grad_h"]) < 1e-4
    assert _rel(gm.numpy(), d["grad_M"]) < 1e-4


def _autograd_reference(h, memory, src, k, lam):
    """Plain autograd transcription of the TF graph (full kNN mask, dense pairs): the oracle."""
    x = h + 1e-8
    f = x / torch.sqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))
    nf = torch.sqrt(torch.clamp((f * f).sum(1, keepdim=True), 1e-8, 1e8))
    nm = torch.sqrt(torch.clamp((memory * memory).sum(1), 1e-8, 1e8))
    logits = f @ memory.T
    s = (1 + logits / (nf * nm)) / 2
    kth = torch.topk(s, min(k, s.shape[1]), dim=1).values[:, -1:]
    bi, ni = (s >= kth).nonzero(as_tuple=True)
    a = torch.softmax(f[bi] @ memory.T, 1).clamp(1e-6, 1)
    b = torch.softmax(memory[ni] @ memory.T, 1).clamp(1e-6, 1)
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    d = (a * (a.log() - b.log())).sum(1) + (b * (b.log() - a.log())).sum(1)
    smooth = (s[bi, ni] * d).sum()
    fit = (torch.logsumexp(logits, 1) - logits[torch.arange(len(src)), src]).sum()
    return fit + lam * smooth


@pytest.mark.parametrize("n,d,b,k,lam,scale", [(16, 6, 8, 10, 0.6, 1.5), (12, 8, 4, 3, 1.0, 1.0),
                                               (20, 5, 3, 25, 0.3, 3.0)])
def test_reference_variant_general_sizes_and_ties(n, d, b, k, lam, scale):
    g = torch.Generator().manual_seed(n * 100 + k)
    memory0 = torch.randn(n, d, generator=g, dtype=torch.float64) * scale  # unnormalised memory
    memory0[1] = memory0[0]                                                # tied neighbours
    h0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    h0[0] = memory0[0] * 2.0                                                # a sample tied twice
    src = torch.randperm(n, generator=g)[:b]
    assert_same_loss_and_grads(lambda hh, mm: lmr_loss(hh, mm, src, k, lam)[0],
                               lambda hh, mm: _autograd_reference(hh, mm, src, k, lam), h0, memory0)


def test_reference_backward_gradcheck():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    src = torch.tensor([0, 4, 6])
    assert torch.autograd.gradcheck(lambda a, m: lmr_loss(a, m, src, 3, 0.7), (h, memory))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="variant"):
        lmr_loss(torch.zeros(2, 3), torch.zeros(4, 3), [0, 1], 2, 1.0, variant="nope")
    with pytest.raises(ValueError, match="source indices"):
        lmr_loss(torch.zeros(2, 3), torch.zeros(4, 3), [0], 2, 1.0)


def _autograd_paper(h, memory, src, k, lam):
    """Dense transcription of the paper's formula (kNN and weights by f_b m_n^T, JS divergence)."""
    x = h + 1e-8
    f = x / torch.sqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))
    w = f @ memory.T
    kth = torch.topk(w, min(k, w.shape[1]), dim=1).values[:, -1:]
    bi, ni = (w >= kth).nonzero(as_tuple=True)
    a = torch.softmax(w, 1)[bi]
    b = torch.softmax(memory @ memory.T, 1)[ni]
    m = (a + b) / 2
    js = 0.5 * (a * (a / m).log()).sum(1) + 0.5 * (b * (b / m).log()).sum(1)
    fit = (torch.logsumexp(w, 1) - w[torch.arange(len(src)), src]).sum()
    return fit + lam * (w[bi, ni] * js).sum()


def test_paper_variant_general_sizes():
    g = torch.Generator().manual_seed(7)
    memory0 = torch.randn(16, 6, generator=g, dtype=torch.float64) * 2.0   # unnormalised
    memory0[5] = memory0[4]
    h0 = torch.randn(8, 6, generator=g, dtype=torch.float64)
    src = torch.randperm(16, generator=g)[:8]
    assert_same_loss_and_grads(lambda hh, mm: lmr_loss(hh, mm, src, 10, 0.6, variant="paper")[0],
                               lambda hh, mm: _autograd_paper(hh, mm, src, 10, 0.6), h0, memory0)


def test_bfloat16_products_stay_close_to_the_reference():
    """The mixed-precision option changes only the memory products' operand precision."""
    import numpy as np
    import torch

    from core.methods.deepdiffusion import lmr_loss
    from tests.conftest import load_reference

    d = load_reference("deepdiffusion_tf_init.npz")
    h = torch.tensor(d["h"], requires_grad=True)
    m = torch.tensor(d["M"], requires_grad=True)
    loss, fit, smooth = lmr_loss(h, m, torch.tensor(d["source_idx"]), int(d["k"]), float(d["lam"]),
                                 precision="bfloat16")
    loss.backward()
    np.testing.assert_allclose(float(loss.detach()), float(d["loss"]), rtol=1e-3)
    for got, want in ((h.grad, d["grad_h"]), (m.grad, d["grad_M"])):
        assert np.abs(got.numpy() - want).max() <= 2e-2 * np.abs(want).max()
    with pytest.raises(ValueError, match="precision"):
        lmr_loss(h, m, torch.tensor(d["source_idx"]), 3, 1.0, precision="float16")


def test_mixed_precision_modes():
    import torch

    from core.device import autocast

    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with autocast(torch.device("cpu")):
        assert (x @ w).dtype == torch.float32  # "auto" keeps CPU runs exact
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="mixed precision"):
        autocast(torch.device("cpu"), "fp8")


def test_bf16_on_a_cpu_without_bf16_instructions_warns_and_benchmarks_avoid_it(monkeypatch):
    """On an AVX2-only CPU bf16 autocast is emulated (a convnet step measured 10x slower than
    float32): asking for it warns once, and the benchmarks' default falls back to "auto"."""
    import torch

    from core import device

    monkeypatch.setattr(device, "cpu_bf16_fast", lambda: False)
    device._warn_slow_bf16.cache_clear()
    assert device.default_precision() == "auto"
    with pytest.warns(RuntimeWarning, match="without bf16 instructions"):
        with device.autocast(torch.device("cpu"), "bf16"):
            pass
    monkeypatch.setattr(device, "cpu_bf16_fast", lambda: True)
    assert device.default_precision() == "bf16"
    device._warn_slow_bf16.cache_clear()


def _scenario(scale: float, n: int = 3000, d: int = 32, b: int = 8, seed: int = 0):
    """Memory rows of norm ~scale: at 1 no softmax value is clipped, at 6 most rows clip."""
    g = torch.Generator().manual_seed(seed)
    memory = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    memory = memory * (scale * (1 + 0.2 * torch.rand(n, 1, generator=g, dtype=torch.float64)))
    h = torch.randn(b, d, generator=g, dtype=torch.float64)
    src = torch.randperm(n, generator=g)[:b]
    clipped = (torch.softmax(memory @ memory.T, 1).amin(1) < 1e-6).double().mean().item()
    return h, memory, src, clipped


@pytest.mark.parametrize("scale,clipped", [(1.0, "none"), (2.5, "some"), (6.0, "most")])
@pytest.mark.parametrize("path", ["kernels", "torch"])
def test_float32_paths_match_the_oracle_with_and_without_clipping(scale, clipped, path, monkeypatch):
    """The fused CPU kernels and the blocked torch path (CUDA, float64) against the dense
    float64 transcription of the reference, on rows that need the clip and rows that do not."""
    from core.methods import _lmr_neighbours

    h, memory, src, frac = _scenario(scale)
    assert {"none": frac == 0, "some": 0 < frac < 0.5, "most": frac > 0.5}[clipped], frac
    if path == "torch":
        monkeypatch.setattr(_lmr_neighbours, "_kernels", False)
    else:
        assert _lmr_neighbours._cpu_kernels() is not None, "numba kernels failed to compile"
    hh, mm = h.clone().requires_grad_(), memory.clone().requires_grad_()
    want = _autograd_reference(hh, mm, src, 10, 0.6)
    gh0, gm0 = torch.autograd.grad(want, [hh, mm])
    h32, m32 = h.float().requires_grad_(), memory.float().requires_grad_()
    loss = lmr_loss(h32, m32, src, 10, 0.6)[0]
    gh, gm = torch.autograd.grad(loss, [h32, m32])
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert _rel(gh.numpy(), gh0.numpy()) < 1e-4
    assert _rel(gm.numpy(), gm0.numpy()) < 1e-4


def test_loss_without_gradient_and_repeated_backward():
    h, memory, src, _ = _scenario(2.5)
    want = _autograd_reference(h.clone(), memory.clone(), src, 10, 0.6).item()  # float64 oracle
    h32, m32 = h.float(), memory.float()
    with torch.no_grad():
        value = lmr_loss(h32, m32, src, 10, 0.6)[0].item()
    m32.requires_grad_()
    loss = lmr_loss(h32, m32, src, 10, 0.6)[0]
    assert value == pytest.approx(want, rel=1e-5)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    (g1,) = torch.autograd.grad(loss, [m32], retain_graph=True)
    (g2,) = torch.autograd.grad(2.0 * loss, [m32])
    assert torch.allclose(2.0 * g1, g2, rtol=1e-5, atol=1e-9)


def test_kernel_exp_is_accurate_to_two_ulp():
    import numba

    from core.methods._lmr_kernels import _exp

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = _exp(x[i])

    x = np.linspace(-87.0, 10.0, 1_000_001).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    rel = np.abs(out / np.exp(x.astype(np.float64)) - 1.0)
    assert rel.max() <= 2 * 2.0 ** -24


def _autograd_cosine(h, memory, src, k, lam, tau, weight_gradient=True, normalise=True):
    """The default's loss written out: cosine logits over a temperature, l2-normalised memory
    rows, the reference's (1 + cos) / 2 kNN weights, clipped rankings and symmetric KL
    (``normalise=False``: logits f m^T with the raw memory rows, as the reference)."""
    x = h + 1e-8
    f = x / x.norm(dim=1, keepdim=True)
    m = memory / memory.norm(dim=1, keepdim=True) if normalise else memory
    cos = f @ m.T
    s = (1 + cos / m.norm(dim=1)) / 2
    kth = torch.topk(s, min(k, s.shape[1]), dim=1).values[:, -1:]
    bi, ni = (s >= kth).nonzero(as_tuple=True)
    a = torch.softmax(cos[bi] / tau, 1).clamp(1e-6, 1)
    b = torch.softmax(m[ni] @ m.T / tau, 1).clamp(1e-6, 1)
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    d = (a * (a.log() - b.log())).sum(1) + (b * (b.log() - a.log())).sum(1)
    fit = (torch.logsumexp(cos / tau, 1) - cos[torch.arange(len(src)), src] / tau).sum()
    w = s[bi, ni] if weight_gradient else s[bi, ni].detach()
    return fit + lam * (w * d).sum()


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_temperature_and_normalised_memory_match_the_formula(tau):
    g = torch.Generator().manual_seed(7)
    memory0 = torch.randn(40, 6, generator=g, dtype=torch.float64) * 2.5  # unnormalised rows
    h0 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    src = torch.randperm(40, generator=g)[:5]
    assert_same_loss_and_grads(
        lambda hh, mm: lmr_loss(hh, mm, src, 4, 0.6, temperature=tau, normalize_memory=True)[0],
        lambda hh, mm: _autograd_cosine(hh, mm, src, 4, 0.6, tau), h0, memory0)


@pytest.mark.parametrize("tau, normalise", [(1.0, False), (0.1, True)])
def test_weights_without_gradient_match_the_formula(tau, normalise):
    # weight_gradient=False: the kNN weights (1 + cos) / 2 are constants of the step (float64 oracle)
    g = torch.Generator().manual_seed(11)
    memory0 = torch.randn(30, 6, generator=g, dtype=torch.float64) * 1.5  # unnormalised rows
    h0 = torch.randn(6, 6, generator=g, dtype=torch.float64)
    src = torch.randperm(30, generator=g)[:6]
    assert_same_loss_and_grads(
        lambda hh, mm: lmr_loss(hh, mm, src, 4, 0.6, temperature=tau, normalize_memory=normalise,
                                weight_gradient=False)[0],
        lambda hh, mm: _autograd_cosine(hh, mm, src, 4, 0.6, tau, weight_gradient=False, normalise=normalise),
        h0, memory0)
    # and it differs from the reference's gradient (which flows through the weights)
    hh = h0.clone().requires_grad_()
    lmr_loss(hh, memory0, src, 4, 0.6, temperature=tau, normalize_memory=normalise)[0].backward()
    hw = h0.clone().requires_grad_()
    lmr_loss(hw, memory0, src, 4, 0.6, temperature=tau, normalize_memory=normalise,
             weight_gradient=False)[0].backward()
    assert not torch.allclose(hh.grad, hw.grad)
