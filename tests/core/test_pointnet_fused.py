"""The fused max-pooled Linear + BatchNorm + ReLU (``core.models.pointnet``) against the plain
composition on the same parameters: outputs, gradients, running statistics, eval mode; for the
layer alone and for the whole PointNet encoder (float64 exact to rounding, float32, bf16 autocast).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.models.pointnet import (MaxPooledLinearBNReLU, PointNetEncoder, SharedMLP, _first_max_index,
                                  _CentredRowsAndMoments, _max_point_indices, max_pooled_linear_bn_relu)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Matrix products of a few MB: see ``one_torch_thread``."""


def reference(x: torch.Tensor, linear: nn.Linear, bn: nn.BatchNorm1d) -> torch.Tensor:
    """The plain composition: Linear, BatchNorm1d, ReLU on all B*P points, then amax over P."""
    b, p, k = x.shape
    return nn.functional.relu(bn(linear(x.reshape(b * p, k)))).view(b, p, -1).amax(dim=1)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float, what: str = "", scale: float | None = None) -> None:
    """Agreement relative to the tensor's scale (elementwise rtol, atol = rtol * max |b|)."""
    if scale is None:
        scale = float(b.detach().abs().max()) if b.numel() else 1.0
    torch.testing.assert_close(a.detach().to(b.dtype), b.detach(), rtol=rtol, atol=rtol * max(scale, 1e-30),
                               msg=lambda m: f"{what}: {m}")


def _randomise_bn(bn: nn.BatchNorm1d, g: torch.Generator, zero_some: bool = True) -> None:
    """gamma of both signs (both the max and the min path) and a few zeros; beta around 0."""
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g, dtype=bn.weight.dtype) * 2 - 1)
            if zero_some:
                bn.weight[::7] = 0
            bn.bias.copy_(torch.rand(bn.bias.shape, generator=g, dtype=bn.bias.dtype) - 0.5)


# --------------------------------------------------------------------------- the index search
@pytest.mark.parametrize("n", [1, 4, 32, 33, 64, 1000, 1024, 1037])
def test_first_max_index_is_argmax_with_ties_to_the_first(n):
    g = torch.Generator().manual_seed(n)
    y = torch.randint(-20, 20, (3, n, 40), generator=g).float()   # many ties
    y[:, -1] = y.amax(dim=1)                                       # the tail ties the maximum
    torch.testing.assert_close(_first_max_index(y), y.argmax(dim=1), rtol=0, atol=0)
    yb = y.bfloat16()
    torch.testing.assert_close(_first_max_index(yb), yb.argmax(dim=1), rtol=0, atol=0)


def test_centred_rows_and_moments_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64, requires_grad=True)
    flat = torch.tensor([3, 3, 0, 19, 7, 3])
    assert torch.autograd.gradcheck(lambda t: _CentredRowsAndMoments.apply(t, flat, torch.float64), (x,))
    sel, mean, cov = _CentredRowsAndMoments.apply(x, flat, torch.float64)
    torch.testing.assert_close(cov, torch.cov(x.T, correction=0))
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(sel, (x - x.mean(0))[flat])
    # bf16 rows (autocast): moments in float32, the gradient comes back in bf16
    xb = x.detach().bfloat16().requires_grad_()
    sel, mean, cov = _CentredRowsAndMoments.apply(xb, flat, torch.float32)
    assert sel.dtype == mean.dtype == torch.float32 and cov.dtype == torch.float64
    (sel.sum() + mean.sum() + cov.sum()).backward()
    assert xb.grad.dtype == torch.bfloat16


# --------------------------------------------------------------------------- the layer alone
LAYER_CASES = {
    "default": dict(),
    "cumulative_average": dict(momentum=None),
    "no_affine": dict(affine=False),
    "no_linear_bias": dict(bias=False),
    "no_running_stats": dict(track_running_stats=False),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_matches_plain_composition_float64(case):
    kw = dict(LAYER_CASES[case])
    bias = kw.pop("bias", True)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    linear = nn.Linear(16, 48, bias=bias).double()
    bn = nn.BatchNorm1d(48, **kw).double()
    _randomise_bn(bn, g)
    ref_linear, ref_bn = copy.deepcopy(linear), copy.deepcopy(bn)
    fused_params = list(linear.parameters()) + list(bn.parameters())
    ref_params = list(ref_linear.parameters()) + list(ref_bn.parameters())
    opt = torch.optim.SGD(fused_params, lr=0.05)
    ref_opt = torch.optim.SGD(ref_params, lr=0.05)
    for step in range(4):
        x = (torch.randn(5, 64, 16, generator=g, dtype=torch.float64) + 0.3).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        out, ref = max_pooled_linear_bn_relu(x, linear, bn), reference(xr, ref_linear, ref_bn)
        assert out.shape == ref.shape == (5, 48) and out.dtype == torch.float64
        close(out, ref, 1e-10, f"output, step {step}")
        w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        (out * w).sum().backward()
        (ref * w).sum().backward()
        close(x.grad, xr.grad, 1e-9, f"grad x, step {step}")
        for p, q in zip(fused_params, ref_params):
            if q.grad is None:
                assert p.grad is None
                continue
            if p is linear.bias:  # cancels against the batch mean in training: 0 up to rounding
                assert float(p.grad.abs().max()) < 1e-12 and float(q.grad.abs().max()) < 1e-12
                continue
            close(p.grad, q.grad, 1e-9, f"grad {tuple(p.shape)}, step {step}")
        opt.step(), ref_opt.step()
        opt.zero_grad(), ref_opt.zero_grad()
    for (name, a), (_, b) in zip(bn.named_buffers(), ref_bn.named_buffers()):
        close(a, b, 1e-12, name) if a.is_floating_point() else torch.testing.assert_close(a, b)
    assert (bn.num_batches_tracked is None) == (not bn.track_running_stats)
    if bn.track_running_stats:
        assert int(bn.num_batches_tracked) == 4
    # eval mode: running statistics (or batch statistics without them), batch of one sample too
    bn.eval(), ref_bn.eval()
    for b in (3, 1):
        x = torch.randn(b, 64, 16, generator=g, dtype=torch.float64, requires_grad=True)
        xr = x.detach().clone().requires_grad_()
        out, ref = max_pooled_linear_bn_relu(x, linear, bn), reference(xr, ref_linear, ref_bn)
        close(out, ref, 1e-10, f"eval output, batch {b}")
        out.sum().backward(), ref.sum().backward()
        close(x.grad, xr.grad, 1e-9, f"eval grad x, batch {b}")


@pytest.mark.parametrize("corr", [0.0, 0.99, 0.9999])
def test_layer_float32_as_accurate_as_plain_on_correlated_features(corr):
    """The variance W_c^T Cov W_c cancels heavily for strongly correlated features (a float32
    covariance lost 1e-3..1e-1 of the variance at corr 0.99..0.999); the fused float32 layer must
    stay as close to float64 as the plain composition, which takes the variance from y itself."""
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    m = MaxPooledLinearBNReLU(128, 1024)
    _randomise_bn(m.bn, g, zero_some=False)
    base = torch.randn(4, 1024, 1, generator=g)
    x = corr * base + (1 - corr) * torch.randn(4, 1024, 128, generator=g) + 2.0   # offset too
    w = torch.randn(4, 1024, generator=g, dtype=torch.float64)
    res = {}
    for name, dtype in (("fused", torch.float32), ("plain", torch.float32), ("exact", torch.float64)):
        mm = copy.deepcopy(m).to(dtype)
        mm.fused = name == "fused"
        xx = x.to(dtype).clone().requires_grad_()
        out = mm(xx)
        (out.double() * w).sum().backward()
        res[name] = {"out": out.double(), "x": xx.grad.double(), "running_var": mm.bn.running_var.double(),
                     **{n: q.grad.double() for n, q in mm.named_parameters() if n != "linear.bias"}}
    for key, truth in res["exact"].items():
        err_f, err_p = _err(res["fused"][key], truth), _err(res["plain"][key], truth)
        assert err_f <= 2 * err_p + 1e-6, (key, err_f, err_p)


def test_layer_module_and_single_row_training_error():
    m = MaxPooledLinearBNReLU(8, 12).double()
    r = copy.deepcopy(m)
    r.fused = False
    assert list(m.state_dict()) == ["linear.weight", "linear.bias", "bn.weight", "bn.bias",
                                    "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    x = torch.randn(3, 10, 8, dtype=torch.float64)
    close(m(x), r(x), 1e-10, "module")
    one = torch.randn(1, 1, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        r(one)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(one)
    m.eval(), r.eval()
    close(m(one), r(one), 1e-10, "eval, one point")
    with pytest.raises(ValueError, match="B x P x K"):
        m(x[0])


def test_duplicate_points_tie_gives_the_same_parameter_gradients():
    """Exactly duplicated points tie in the max: amax splits their gradient, the fused layer
    gives it to the first; same outputs, same gradients w.r.t. parameters, same per-pair sums."""
    g = torch.Generator().manual_seed(3)
    m = MaxPooledLinearBNReLU(6, 20).double()
    _randomise_bn(m.bn, g, zero_some=False)
    r = copy.deepcopy(m)
    r.fused = False
    x = torch.randn(2, 16, 6, generator=g, dtype=torch.float64)
    x[:, 8:] = x[:, :8]                                             # every point twice
    x.requires_grad_()
    xr = x.detach().clone().requires_grad_()
    out, ref = m(x), r(xr)
    close(out, ref, 1e-10, "output")
    out.sum().backward(), ref.sum().backward()
    for p, q in zip(m.parameters(), r.parameters()):
        close(p.grad, q.grad, 1e-9, "parameter grad", scale=float(r.linear.weight.grad.abs().max()))
    close(x.grad[:, :8] + x.grad[:, 8:], xr.grad[:, :8] + xr.grad[:, 8:], 1e-9, "summed grad x")


# --------------------------------------------------------------------------- the whole encoder
def _encoders(dtype, seed=0, out_dim=16):
    torch.manual_seed(seed)
    fused = PointNetEncoder(out_dim).to(dtype)
    g = torch.Generator().manual_seed(seed)
    for m in fused.modules():
        if isinstance(m, SharedMLP) and m.max_pool:
            _randomise_bn(m.layers[-2], g)
    # T-nets regress a zero matrix at initialisation: give them something to transform with
    with torch.no_grad():
        for tnet in (fused.input_tnet, fused.feature_tnet):
            tnet.fc[-1].weight.normal_(0, 0.01, generator=g)
    plain = PointNetEncoder(out_dim, fused=False).to(dtype)
    assert list(plain.state_dict()) == list(fused.state_dict())
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _check_encoders(fused, plain, points, rtol, steps=3, lr=0.01):
    opt = torch.optim.SGD(fused.parameters(), lr=lr)
    ref_opt = torch.optim.SGD(plain.parameters(), lr=lr)
    g = torch.Generator().manual_seed(7)
    fused.train(), plain.train()
    for step in range(steps):
        x = points[step % len(points)].clone().requires_grad_()
        xr = x.detach().clone().requires_grad_()
        out, ref = fused(x), plain(xr)
        close(out, ref, rtol, f"encoder output, step {step}")
        w = torch.randn(ref.shape, generator=g, dtype=ref.dtype)
        (out * w).sum().backward(), (ref * w).sum().backward()
        close(x.grad, xr.grad, rtol, f"encoder grad x, step {step}")
        ref_grads = {name: q.grad for name, q in plain.named_parameters()}
        for name, p in fused.named_parameters():
            close(p.grad, ref_grads[name], rtol, f"encoder grad {name}, step {step}",
                  scale=_grad_scale(ref_grads, name))
        opt.step(), ref_opt.step()
        opt.zero_grad(), ref_opt.zero_grad()
    state, ref_state = fused.state_dict(), plain.state_dict()
    assert list(state) == list(ref_state)
    for name in state:
        if state[name].is_floating_point():
            close(state[name], ref_state[name], rtol, f"state {name}")
        else:
            torch.testing.assert_close(state[name], ref_state[name])
    fused.eval(), plain.eval()
    x = points[-1]
    close(fused(x), plain(x), rtol, "eval output")
    close(fused(x[:1]), plain(x[:1]), rtol, "eval output, one shape")


def test_encoder_matches_plain_encoder_float64():
    fused, plain = _encoders(torch.float64)
    g = torch.Generator().manual_seed(11)
    points = [torch.randn(4, 64, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    _check_encoders(fused, plain, points, rtol=1e-8)


def _three_ways(fused, plain, x, loss, autocast_bf16=False):
    """(output, grad x, parameter grads) of the fused and the plain encoder in float32 (or under
    bf16 autocast) and of the plain encoder in float64 (the truth both are measured against)."""
    exact = PointNetEncoder(fused.out_dim, fused=False).double().train(fused.training)
    exact.load_state_dict(plain.state_dict())
    res = {}
    for name, enc, dtype in (("fused", fused, torch.float32), ("plain", plain, torch.float32),
                             ("exact", exact, torch.float64)):
        xx = x.to(dtype).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16 and name != "exact"):
            out = enc(xx)
        loss(out.double()).backward()
        res[name] = (out.detach().double(), xx.grad.double(),
                     {n: q.grad.double() for n, q in enc.named_parameters()})
    return res


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def _grad_scale(grads: dict, name: str) -> float:
    """A gradient's scale; a Linear bias before a training-mode BatchNorm has gradient 0 up to
    rounding, so it is measured against its weight's gradient."""
    scale = float(grads[name].abs().max())
    if name.endswith(".bias") and name[:-4] + "weight" in grads:
        scale = max(scale, float(grads[name[:-4] + "weight"].abs().max()))
    return scale


def _rel_norm_err(a: torch.Tensor, truth: torch.Tensor, scale: float) -> float:
    return float((a.detach().double() - truth.detach()).norm()) / max(scale, 1e-300)


def _norm_scale(tensors: dict, name: str) -> float:
    """A tensor's norm; a Linear bias before a training-mode BatchNorm has gradient 0 up to
    rounding, so it is measured against its weight's gradient (norm per element, times the
    bias's element count)."""
    t = tensors[name]
    scale = float(t.norm())
    if name.endswith(".bias") and name[:-4] + "weight" in tensors:
        w = tensors[name[:-4] + "weight"]
        scale = max(scale, float(w.norm()) * (t.numel() / w.numel()) ** 0.5)
    return scale


def _as_accurate_as_plain(fused: dict, plain: dict, exact: dict, what: str, floor: float = 1e-5) -> None:
    """Per tensor: the fused float32 path's error against float64 (relative, Frobenius norm)
    is at most twice the plain float32 path's error plus a small floor. Two float32 paths are
    never compared with each other: on heavily cancelling sums (BatchNorm backward over 4,096
    rows) both are ~1e-4 of scale away from float64 and their per-element difference depends
    on the CPU's kernels (AVX2, AVX-512, AMX) and the thread count."""
    for name, truth in exact.items():
        scale = _norm_scale(exact, name)
        err_f = _rel_norm_err(fused[name], truth, scale)
        err_p = _rel_norm_err(plain[name], truth, scale)
        assert err_f <= 2 * err_p + floor, (f"{what} {name}: fused float32 is {err_f:.3g} from float64, "
                                            f"plain float32 {err_p:.3g}")
        assert err_f < 1e-2, f"{what} {name}: fused float32 is {err_f:.3g} from float64"


@pytest.mark.parametrize("seed", [0, 1])
def test_encoder_float32_full_clouds_as_accurate_as_plain(seed):
    """Float32, 4 x 1024 points in the unit ball, default initialisation: the fused and the
    plain float32 encoders each against the plain encoder in float64 on the same parameters.
    First step: outputs and gradients (input points and every parameter); second step (the
    same update applied to all three, so they hold the same parameters): outputs; then the
    running statistics and eval outputs (batch 4 and 1).

    The second step's gradients are not compared: once the T-nets transform, float32 ReLU
    kinks flip under 1e-7 changes, and either float32 path's gradients then move by ~1e-3 of
    their scale at some elements. Gradients over several steps are compared in float64 above.
    """
    torch.manual_seed(seed)
    fused = PointNetEncoder(16)
    plain = PointNetEncoder(16, fused=False)
    plain.load_state_dict(fused.state_dict())
    exact = PointNetEncoder(16, fused=False).double()
    exact.load_state_dict(plain.state_dict())
    encoders = {"fused": fused, "plain": plain, "exact": exact}
    g = torch.Generator().manual_seed(12 + seed)

    def cloud():
        x = torch.randn(4, 1024, 3, generator=g)
        return x / x.norm(dim=-1, keepdim=True) * torch.rand(4, 1024, 1, generator=g)

    w = torch.randn(4, 16, generator=g, dtype=torch.float64)
    for step in range(2):
        x = cloud()
        res = {}
        for name, enc in encoders.items():
            enc.train()
            xx = x.to(torch.float64 if name == "exact" else torch.float32).clone().requires_grad_()
            out = enc(xx)
            (out.double() * w).sum().backward()
            res[name] = {"output": out.detach().double()}
            if step == 0:
                res[name]["grad x"] = xx.grad.double()
                res[name].update({f"grad {n}": (q.grad if q.grad is not None else torch.zeros_like(q)).double()
                                  for n, q in enc.named_parameters()})
        _as_accurate_as_plain(res["fused"], res["plain"], res["exact"], f"step {step}")
        with torch.no_grad():  # one Adam-sized step from the float64 gradient, the same for all
            for q, r, e in zip(fused.parameters(), plain.parameters(), exact.parameters()):
                if e.grad is not None:
                    e.sub_(1e-3 * e.grad.sign())
                q.copy_(e), r.copy_(e)
                e.copy_(q)
        for enc in encoders.values():
            enc.zero_grad()
    states = {name: enc.state_dict() for name, enc in encoders.items()}
    for key, truth in states["exact"].items():
        if not truth.is_floating_point():
            assert all(torch.equal(states[n][key], truth) for n in ("fused", "plain")), key
    running = {n: {k: v.double() for k, v in st.items() if "running" in k} for n, st in states.items()}
    _as_accurate_as_plain(running["fused"], running["plain"], running["exact"], "state")
    x = cloud()
    for enc in encoders.values():
        enc.eval()
    with torch.no_grad():
        outs = {n: {"eval output": enc(x.to(next(enc.parameters()).dtype)).double(),
                    "eval output, one shape": enc(x[:1].to(next(enc.parameters()).dtype)).double()}
                for n, enc in encoders.items()}
    _as_accurate_as_plain(outs["fused"], outs["plain"], outs["exact"], "eval")


@pytest.mark.parametrize("seed", [0, 1])
def test_max_point_search_float32_picks_the_float64_maximum(seed):
    """The fused layer's point search in float32 chooses the float64 arg-max wherever the top
    two candidates of a channel are well apart (1e-4 of the channel's range, ~1,000 float32
    epsilons), for both signs of gamma; where they are closer either point is a correct max."""
    g = torch.Generator().manual_seed(40 + seed)
    torch.manual_seed(seed)
    linear = nn.Linear(128, 1024)
    x = torch.relu(torch.randn(4, 1024, 128, generator=g) + 0.5)    # a ReLU'd feature map
    sign = torch.where(torch.rand(1024, generator=g) < 0.5, -1.0, 1.0)
    ws = linear.weight.detach() * sign.unsqueeze(1)
    idx = _max_point_indices(x, ws, 1024)                           # float32, as training runs
    y64 = torch.matmul(x.double(), ws.double().t())                 # B x P x C
    top2 = y64.topk(2, dim=1)
    gap = (top2.values[:, 0] - top2.values[:, 1]) / (y64.amax(dim=1) - y64.amin(dim=1))
    clear = gap > 1e-4
    assert float(clear.float().mean()) > 0.9, "the test data should mostly have clear maxima"
    assert torch.equal(idx[clear], top2.indices[:, 0][clear])
    # close calls: the chosen point's float64 value is within the gap of the maximum
    chosen = y64.gather(1, idx.unsqueeze(1)).squeeze(1)
    span = y64.amax(dim=1) - y64.amin(dim=1)
    assert bool(((top2.values[:, 0] - chosen) <= 1e-4 * span).all())


@pytest.mark.parametrize("seed", [2, 3])
def test_encoder_bf16_autocast_as_accurate_as_plain(seed):
    """Under CPU bf16 autocast (DeepDiffusion's mixed_precision="bf16") the fused layer searches
    in bf16 like the plain Linear and computes the selected values and statistics in float32.
    bf16 through the whole encoder is itself far from float64 (~20% on the output at default
    initialisation), so: the fused encoder is about as close to float64 as the plain one."""
    torch.manual_seed(seed)
    fused = PointNetEncoder(16)
    plain = PointNetEncoder(16, fused=False)
    plain.load_state_dict(fused.state_dict())
    g = torch.Generator().manual_seed(13)
    x = torch.randn(4, 256, 3, generator=g)
    x = x / x.norm(dim=-1, keepdim=True)
    res = _three_ways(fused, plain, x, lambda out: (out ** 2).sum(), autocast_bf16=True)
    exact = res["exact"]
    assert _err(res["fused"][0], exact[0]) <= 1.5 * _err(res["plain"][0], exact[0]) + 0.02
    assert _err(res["fused"][1], exact[1]) <= 1.5 * _err(res["plain"][1], exact[1]) + 0.05

    def cosines(k):
        cos = nn.functional.cosine_similarity
        return torch.tensor([float(cos(res[k][2][n].flatten(), grad.flatten(), dim=0))
                             for n, grad in exact[2].items() if not n.endswith(".bias")])

    assert all(torch.isfinite(t).all() for t in res["fused"][2].values())
    assert float(cosines("fused").median()) >= float(cosines("plain").median()) - 0.05
    for name, buf in fused.state_dict().items():
        if buf.is_floating_point() and "running" in name:
            close(buf, plain.state_dict()[name], 0.05, name)
    fused.eval(), plain.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        e_out, e_ref = fused(x[:1]), plain(x[:1])
    assert e_out.shape == (1, 16) and torch.isfinite(e_out).all()
    assert _err(e_out.double(), e_ref.double()) < 0.5


def test_set_fused_and_old_state_dicts_load():
    fused, plain = _encoders(torch.float64, seed=4)
    keys = list(plain.state_dict())
    assert "mlp2.layers.6.weight" in keys and "mlp2.layers.7.running_var" in keys
    assert "input_tnet.mlp.layers.7.num_batches_tracked" in keys
    again = PointNetEncoder(16).double()
    again.load_state_dict(plain.state_dict())  # strict: a plain encoder's checkpoint loads as is
    x = torch.randn(2, 32, 3, dtype=torch.float64)
    again.eval(), plain.eval()
    close(again(x), plain(x), 1e-10, "loaded")
    again.set_fused(False)
    assert all(not m.fused for m in again.modules() if isinstance(m, SharedMLP) and m.max_pool)
    close(again(x), plain(x), 0, "set_fused(False)")
    no_tnets = PointNetEncoder(8, transform_nets=False).eval()
    assert no_tnets(torch.randn(1, 20, 3)).shape == (1, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_plain():
    """The same code on a GPU (argmax instead of the CPU's blockwise search, one chunk)."""
    g = torch.Generator().manual_seed(21)
    m = MaxPooledLinearBNReLU(16, 48).double()
    _randomise_bn(m.bn, g)
    m = m.cuda()
    r = copy.deepcopy(m)
    r.fused = False
    for _ in range(2):
        x = torch.randn(5, 64, 16, generator=g, dtype=torch.float64).cuda().requires_grad_()
        xr = x.detach().clone().requires_grad_()
        out, ref = m(x), r(xr)
        close(out, ref, 1e-10, "cuda output")
        out.sum().backward(), ref.sum().backward()
        close(x.grad, xr.grad, 1e-9, "cuda grad x")
        for p, q in zip(m.parameters(), r.parameters()):
            close(p.grad, q.grad, 1e-9, "cuda parameter grad", scale=float(r.linear.weight.grad.abs().max()))
    close(m.bn.running_var, r.bn.running_var, 1e-12, "cuda running_var")
    m.eval(), r.eval()
    x = torch.randn(1, 64, 16, generator=g, dtype=torch.float64).cuda()
    close(m(x), r(x), 1e-10, "cuda eval")
    enc = PointNetEncoder(16).cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = enc(torch.randn(4, 256, 3, device="cuda"))
    h.float().sum().backward()
    assert torch.isfinite(h).all() and all(torch.isfinite(p.grad).all() for p in enc.parameters())
