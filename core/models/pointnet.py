"""PointNet encoder (Qi et al. 2017) as the inner-ear DeepDiffusion paper uses it.

P x 3 points -> input transform net (3 x 3) -> shared MLP 64, 64 -> feature transform net
(64 x 64) -> shared MLP 64, 128, 1024 -> max pool -> FC 512 -> FC ``out_dim`` (paper: 254).
The output is the raw feature h; DeepDiffusion l2-normalises it itself.
"""
from __future__ import annotations

import torch
from torch import nn


def _first_max_index(y: torch.Tensor, group: int = 16) -> torch.Tensor:
    """Index of the first maximum of ``y`` (S x N x C) over dim 1: S x C, int64.

    The same indices as ``y.argmax(dim=1)`` (the first of tied maxima), but on the CPU torch's
    argmax over a non-innermost dim is ~30x slower than ``amax``; so take the max of each block
    of ``group`` points with ``amax``, find the first block holding the maximum (recursively), and
    the first maximum inside it. N not a multiple of ``group``: the tail rows are compared last,
    so ties still resolve to the first index.
    """
    s, n, c = y.shape
    if y.device.type != "cpu" or n <= 2 * group:
        return y.argmax(dim=1)
    nb = n // group
    head = y[:, :nb * group].view(s, nb, group, c)
    block = _first_max_index(head.amax(dim=2), group)                            # S x C
    rows = torch.arange(s, device=y.device).view(s, 1)
    cols = torch.arange(c, device=y.device).view(1, c)
    cand = head[rows, block, :, cols]                                             # S x C x group
    idx = block * group + cand.argmax(dim=2)
    if nb * group < n:  # tail rows: win only when strictly larger than the head's maximum
        tail_val, tail_idx = y[:, nb * group:].max(dim=1)
        head_val = cand.amax(dim=2)
        idx = torch.where(tail_val > head_val, tail_idx + nb * group, idx)
    return idx


@torch.no_grad()
def _max_point_indices(x: torch.Tensor, w: torch.Tensor, rows_per_chunk: int) -> torch.Tensor:
    """argmax over points p of x[b, p] . w[c] for x B x P x K, w C x K: B x C, int64.

    Chunked over the batch so that each chunk's P x C products stay in cache and are never kept.
    """
    b, p, _ = x.shape
    chunk = max(1, rows_per_chunk // max(p, 1))
    idx = torch.empty(b, w.shape[0], dtype=torch.long, device=x.device)
    wt = w.t()
    for s in range(0, b, chunk):
        idx[s:s + chunk] = _first_max_index(torch.matmul(x[s:s + chunk], wt))
    return idx


def max_pooled_linear_bn_relu(x: torch.Tensor, linear: nn.Linear, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``ReLU(bn(linear(x))).amax(dim=1)`` for per-point features x (B x P x K), without ever
    forming the B*P x C activations: B x C.

    Exact algebra (the same function and gradients, up to rounding):

    * BatchNorm is a per-channel affine map with scale s_c = gamma_c / sqrt(var_c + eps) and ReLU
      is monotone, so the max over points is reached where y = x W^T + b is largest (s_c > 0) or
      smallest (s_c < 0); s_c has the sign of gamma_c. The point indices are found without
      autograd, in chunks, from x (W * sign(gamma))^T; then y at those points only is recomputed
      with autograd from the gathered input rows (B x C x K).
    * Training-mode batch statistics need no y either: mean_c = mean(x) . W_c + b_c and
      var_c = W_c^T Cov(x) W_c (biased, as BatchNorm normalises with), Cov(x) the K x K centred
      covariance of the B*P input rows, accumulated in float64 (see ``_CentredRowsAndMoments``). The
      running statistics are updated as nn.BatchNorm1d does (momentum or cumulative average,
      unbiased variance n / (n - 1), num_batches_tracked);
      eval mode normalises with the running statistics.

    Backward then runs through small tensors only (no B*P x C tensor, no backward matmul over
    all points for this layer). Ties in the max: ``amax`` splits the gradient evenly between
    tied points, this takes the first of them (same value; only the gradient w.r.t. exactly
    duplicated points is distributed differently, gradients w.r.t. parameters are the same).
    The one tie that changes a parameter gradient, gamma_c == 0 exactly (every point ties at
    ReLU(beta_c)), is handled: gamma_c's gradient then uses the mean over the points, as amax's.

    Under autocast the point search runs in the autocast dtype (as the reference's Linear would)
    and the selected values and statistics in float32 (autocast off; the output is float32).
    Device-agnostic torch ops; on a GPU the search is one argmax over up to 2^17 rows at a time,
    the gamma == 0 check is a host sync, and the backward's index_add_ sums in arbitrary order.
    """
    if x.ndim != 3:
        raise ValueError(f"max_pooled_linear_bn_relu expects B x P x K features, got {tuple(x.shape)}")
    b, p, k = x.shape
    n = b * p
    c = linear.out_features
    batch_stats = bn.training or bn.running_mean is None or bn.running_var is None
    if batch_stats and n <= 1:  # nn.BatchNorm1d's own error for a single row in training
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{torch.Size([n, c])}")
    dev = x.device.type
    search_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    with torch.autocast(dev, enabled=False):
        w, bias, gamma, beta = linear.weight, linear.bias, bn.weight, bn.bias
        dtype = torch.promote_types(x.dtype, w.dtype)
        with torch.no_grad():
            ws = w.detach() if gamma is None else w.detach() * gamma.detach().sign().unsqueeze(1)
            rows = 1024 if x.device.type == "cpu" else 1 << 17
            idx = _max_point_indices(x.detach().to(search_dtype), ws.to(search_dtype), rows)  # B x C
            flat = (idx.t() + torch.arange(b, device=x.device) * p).reshape(-1)             # C*B
        x2 = x.reshape(n, k)
        wd = w.to(dtype)
        zero_gamma = gamma is not None and bool((gamma == 0).any())   # (a host sync on GPUs)
        if batch_stats:
            # centred throughout: d = y_sel - mean_c = (x_sel - mean(x)) . W_c
            sel, mean_x, cov = _CentredRowsAndMoments.apply(x2, flat, dtype)
            d = torch.matmul(sel.view(c, b, k), wd.unsqueeze(2)).view(c, b).t()             # B x C
            if zero_gamma:
                # s_c = 0: every point ties at ReLU(beta_c); amax splits the gradient evenly
                # between them, so gamma_c's gradient sees the mean over the points
                d_mean = (x.mean(dim=1, dtype=dtype) - mean_x) @ wd.t()
                d = torch.where(gamma == 0, d_mean, d)
            if bias is not None:
                # b cancels against the batch mean; it stays in the graph with its exact zero
                # gradient, as (up to rounding) in the plain composition
                d = d + 0 * bias.to(dtype)
            w64 = wd.to(torch.float64)
            var = ((w64 @ cov) * w64).sum(dim=1).clamp_min(0).to(dtype)                     # biased
            if bn.training and bn.track_running_stats and bn.running_mean is not None:
                with torch.no_grad():
                    mean = mean_x @ wd.t() + (0 if bias is None else bias.to(dtype))
                _update_running_stats(bn, mean, var.detach(), n)
        else:
            y = torch.matmul(x2.index_select(0, flat).to(dtype).view(c, b, k), wd.unsqueeze(2))
            y = y.view(c, b).t()                                                             # B x C
            if zero_gamma:
                y = torch.where(gamma == 0, x.mean(dim=1, dtype=dtype) @ wd.t(), y)
            if bias is not None:
                y = y + bias.to(dtype)
            d = y - bn.running_mean.to(dtype)
            var = bn.running_var.to(dtype)
        scale = torch.rsqrt(var + bn.eps)
        if gamma is not None:
            scale = scale * gamma.to(dtype)
        z = d * scale
        if beta is not None:
            z = z + beta.to(dtype)
        return torch.relu(z)


def _gram64(xc: torch.Tensor, rows: int = 1024) -> torch.Tensor:
    """xc^T xc accumulated in float64 (K x K), in row chunks so no float64 copy of xc is made."""
    k = xc.shape[1]
    out = torch.zeros(k, k, dtype=torch.float64, device=xc.device)
    for s in range(0, xc.shape[0], rows):
        part = xc[s:s + rows].to(torch.float64)
        out.addmm_(part.t(), part)
    return out


class _CentredRowsAndMoments(torch.autograd.Function):
    """For x n x K: (rows ``flat`` of xc = x - mean(x), mean(x), Cov = xc^T xc / n in float64),
    xc and the mean in ``dtype`` (float32 for bf16 x under autocast).

    The covariance is accumulated in float64: the BatchNorm variance W_c^T Cov W_c is a quadratic
    form that cancels heavily when the K features are strongly correlated (as PointNet's are), so
    a float32 Cov loses digits the plain composition keeps (its variance comes from y itself).

    One fused backward into one n x K buffer: ``xc (G + G^T) / n`` (the centring's own term
    ``-1 1^T xc (G + G^T) / n^2`` is 0: the rows of xc sum to zero) ``+ (g_mean - sum g_sel) / n``
    on every row, plus ``g_sel`` added at the selected rows; autograd's composition would make
    several n x K temporaries for the same sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, flat: torch.Tensor, dtype: torch.dtype):
        n = x.shape[0]
        mean = x.mean(dim=0, dtype=dtype)
        xc = torch.sub(x, mean)                          # in dtype; centred, not E[xx^T] - mm^T
        cov = _gram64(xc).div_(n)
        ctx.save_for_backward(xc, flat)
        ctx.x_dtype = x.dtype
        return xc.index_select(0, flat), mean, cov

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_sel, g_mean, g_cov):
        xc, flat = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        n = xc.shape[0]
        grad = torch.mm(xc, ((g_cov + g_cov.t()) / n).to(xc.dtype))
        grad.add_((g_mean - g_sel.sum(dim=0)) / n)
        grad.index_add_(0, flat, g_sel)
        return grad.to(ctx.x_dtype), None, None


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """nn.BatchNorm1d's running-statistics update from the batch mean and biased variance."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
    bn.running_var.mul_(1 - factor).add_((var * (n / (n - 1))).to(bn.running_var.dtype), alpha=factor)


class MaxPooledLinearBNReLU(nn.Module):
    """``Linear(K -> C) + BatchNorm1d(C) + ReLU`` per point, then max over the points:
    B x P x K -> B x C, computed by :func:`max_pooled_linear_bn_relu` (``fused=False``: the plain
    composition). Holds the ``nn.Linear`` and ``nn.BatchNorm1d`` as ``linear`` and ``bn``."""

    def __init__(self, in_features: int, out_features: int, *, fused: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return max_pooled_linear_bn_relu(x, self.linear, self.bn)
        b, p, k = x.shape
        return torch.relu(self.bn(self.linear(x.reshape(b * p, k)))).view(b, p, -1).amax(dim=1)


class SharedMLP(nn.Module):
    """Per-point Linear + BatchNorm + ReLU layers on B x P x C (the paper's 1x1 convolutions).

    Points are flattened to (B*P) x C: the same BatchNorm statistics as Conv1d + BatchNorm1d
    over (B, C, P), and a plain matrix product, which runs faster than Conv1d on the CPU.

    ``max_pool=True`` returns the max over the points (B x C_last); with ``fused`` (default) the
    last Linear + BatchNorm + ReLU and the max run as :func:`max_pooled_linear_bn_relu`, on the
    same ``layers`` modules, so the state dict is the same either way.
    """

    def __init__(self, channels: list[int], *, max_pool: bool = False, fused: bool = True):
        super().__init__()
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.max_pool = max_pool
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, c = x.shape
        h = x.reshape(b * p, c)
        if not self.max_pool:
            return self.layers(h).view(b, p, -1)
        if not self.fused:
            return self.layers(h).view(b, p, -1).amax(dim=1)
        *first, linear, bn, _relu = self.layers
        for layer in first:
            h = layer(h)
        return max_pooled_linear_bn_relu(h.view(b, p, -1), linear, bn)


def _shared_mlp(channels: list[int], **kw) -> SharedMLP:
    return SharedMLP(channels, **kw)


class TNet(nn.Module):
    """Predicts a k x k alignment matrix from B x P x k point features (starts at identity)."""

    def __init__(self, k: int, *, fused: bool = True):
        super().__init__()
        self.k = k
        self.mlp = _shared_mlp([k, 64, 128, 1024], max_pool=True, fused=fused)
        self.fc = nn.Sequential(
            nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
            nn.Linear(256, k * k))
        # the regression starts at zero so the transform starts as the identity
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.mlp(x)                                             # B x 1024, max-pooled
        eye = torch.eye(self.k, device=x.device, dtype=g.dtype)
        return self.fc(g).view(-1, self.k, self.k) + eye


class PointNetEncoder(nn.Module):
    """``forward(points B x P x 3) -> B x out_dim``. ``transform_nets=False`` drops both T-nets.

    ``fused`` (default True): the three ``Linear(128, 1024) + BatchNorm + ReLU + max pool`` ends
    (both T-nets and ``mlp2``) run as :func:`max_pooled_linear_bn_relu`, which never forms the
    B*P x 1024 activations; ``fused=False`` is the plain composition. Same parameters, buffers and
    state-dict keys either way (``set_fused`` switches an existing encoder).
    """

    def __init__(self, out_dim: int = 254, *, transform_nets: bool = True, fused: bool = True):
        super().__init__()
        self.out_dim = out_dim
        self.input_tnet = TNet(3, fused=fused) if transform_nets else None
        self.mlp1 = _shared_mlp([3, 64, 64])
        self.feature_tnet = TNet(64, fused=fused) if transform_nets else None
        self.mlp2 = _shared_mlp([64, 64, 128, 1024], max_pool=True, fused=fused)
        self.head = nn.Sequential(nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                  nn.Linear(512, out_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"PointNetEncoder expects B x P x 3 points, got {tuple(points.shape)}")
        x = points                                                  # B x P x 3
        if self.input_tnet is not None:
            x = torch.bmm(x, self.input_tnet(x))                    # each point row times T
        x = self.mlp1(x)
        if self.feature_tnet is not None:
            x = torch.bmm(x, self.feature_tnet(x))
        x = self.mlp2(x)                                            # symmetric max pool
        return self.head(x)

    def set_fused(self, fused: bool) -> "PointNetEncoder":
        """Switch every max-pooled shared MLP between the fused and the plain computation."""
        for m in self.modules():
            if isinstance(m, SharedMLP) and m.max_pool:
                m.fused = bool(fused)
        return self
