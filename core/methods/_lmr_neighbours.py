"""The neighbour-row part of the reference LMR loss: for each batch sample beta and each of its
kNN memory rows n, the symmetric KL between a_beta = rank(f_beta M^T) and b_n = rank(m_n M^T),
and (when a gradient is wanted) everything the backward pass needs, computed in the forward.

This is where the loss spends its time: (B k) x N ranking rows. Per step it costs three
(B k) x N x D memory products (the logits and the two gradient products) plus two fused
passes over the logits (``_lmr_kernels``, numba, on the CPU) or a few blocked torch passes
(any device, any float dtype: CUDA, float64 tests).

Most rows need no clipping: when every p = softmax(z) of a row is >= 1e-6, the clip and the
renormalisation of the reference are the identity, log b = z - lse, and both the divergence
and its gradient reduce to row sums over exp(z). Rows where the clip bites (a memory whose
norms have grown) take the general path below, which follows the reference step by step.

The gradient is linear in the upstream gradient of the smoothness sum, so it is formed here
for an upstream gradient of 1 and scaled in ``backward``: the one (B k) x N array kept for
backward is that gradient.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch

CLIP = 1e-6  # the reference clips ranking vectors to [1e-6, 1] before renormalising
_MAX_GAP = 60.0  # exp(z - shift) stays far from float32 underflow when shift - max z < this
_BLOCK = 4096    # columns per block in the torch path

_kernels = None


class _Workspace:
    """Large work buffers kept between loss steps: glibc maps every allocation above 32 MB anew,
    so a fresh 100 MB CPU tensor is paid again in page faults on each step. A buffer is taken
    for exclusive use and given back when its last reader is done (the end of a forward
    without gradient, or the ``Lease`` held by the autograd context); one that is never given
    back is simply freed by Python."""

    def __init__(self, keep: int = 4):
        self._free: list[torch.Tensor] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, shape, dtype, device) -> torch.Tensor:
        need = math.prod(shape)
        with self._lock:
            fits = [i for i, base in enumerate(self._free)
                    if base.dtype == dtype and base.device == device and base.numel() >= need]
            if fits:
                base = self._free.pop(min(fits, key=lambda i: self._free[i].numel()))
                return base[:need].view(shape)
        return torch.empty(shape, dtype=dtype, device=device)

    def give(self, t: torch.Tensor) -> None:
        base = t._base if t._base is not None else t
        if not base.is_contiguous() or base.dim() == 0:
            return
        with self._lock:
            self._free.append(base.view(-1))
            self._free.sort(key=lambda x: x.numel(), reverse=True)
            del self._free[self._keep:]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


workspace = _Workspace()


class Lease:
    """Gives work buffers back when the holder (an autograd node's context) is freed: after
    backward, or never while a retained graph may still run backward again."""

    def __init__(self, *tensors):
        self._tensors = tensors

    def __del__(self):
        for t in self._tensors:
            workspace.give(t)


def _cpu_kernels():
    """The numba kernels, or None where numba is missing or fails to compile."""
    global _kernels
    if _kernels is None:
        try:
            from . import _lmr_kernels
            _lmr_kernels.warm()
            _kernels = _lmr_kernels
        except Exception as exc:  # noqa: BLE001 - the torch path gives the same values, slower
            import warnings

            warnings.warn(f"LMR loss: numba kernels unavailable ({type(exc).__name__}: {exc}); "
                          "using the slower torch path", RuntimeWarning, stacklevel=3)
            _kernels = False
    return _kernels or None


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _row_stats_torch(z, shift, a, la, kk):
    rows, n = z.shape
    b = rows // kk
    dt = a.dtype
    out = torch.zeros(rows, 5, dtype=dt, device=z.device)
    out[:, 4] = math.inf
    for j0 in range(0, n, _BLOCK):
        x = z[:, j0:j0 + _BLOCK].to(dt)
        xs = x - shift[:, None]
        e = torch.exp(xs)
        out[:, 0] += e.sum(1)
        out[:, 1] += torch.linalg.vecdot(e, xs)
        out[:, 2] += torch.bmm(e.view(b, kk, -1), la[:, j0:j0 + _BLOCK, None]).reshape(-1)
        out[:, 3] += torch.bmm(x.view(b, kk, -1), a[:, j0:j0 + _BLOCK, None]).reshape(-1)
        out[:, 4] = torch.minimum(out[:, 4], e.amin(1))
    return out


def _row_gradient_torch(z, lse, c, wv, a, la, kk, bsum, lsum):
    rows, n = z.shape
    b = rows // kk
    dt = a.dtype
    w3 = wv.view(b, kk, 1)
    for j0 in range(0, n, _BLOCK):
        j1 = min(n, j0 + _BLOCK)
        lb = z[:, j0:j1].to(dt).sub_(lse[:, None]).view(b, kk, -1)
        bb = torch.exp(lb)
        bsum[:, j0:j1] = (w3 * bb).sum(1)
        lsum[:, j0:j1] = (w3 * lb).sum(1)
        t = lb.add_(c.view(b, kk, 1)).sub_(la[:, None, j0:j1]).mul_(bb).sub_(a[:, None, j0:j1]).mul_(w3)
        z[:, j0:j1] = t.view(rows, -1).to(z.dtype)


def _general_rows(z, beta, wv, a, la, h_a, want_grad, chunk_elems: int = 1 << 24):
    """Rows where the clip bites, exactly as the reference: softmax, clip to [1e-6, 1],
    renormalise, log. Returns d and, if wanted, (t, wv log b, wv b) per row."""
    n = z.shape[1]
    step = max(1, chunk_elems // max(n, 1))
    d, t_out, lb_out, b_out = [], [], [], []
    for i in range(0, z.shape[0], step):
        zz, bi, w = z[i:i + step], beta[i:i + step], wv[i:i + step, None]
        p = torch.softmax(zz, dim=1)
        bn = p.clamp(CLIP, 1.0)
        s = bn.sum(1, keepdim=True)
        bn = bn / s
        lb = torch.log(bn)
        ar, lar = a[bi], la[bi]
        hb = torch.linalg.vecdot(bn, lb)
        b_la = torch.linalg.vecdot(bn, lar)
        d.append(h_a[bi] + hb - b_la - torch.linalg.vecdot(ar, lb))
        if want_grad:
            g = (lb - lar - ar / bn + (1.0 - hb + b_la)[:, None]) * (w / s)
            g = g.masked_fill_(p < CLIP, 0.0)  # softmax values never exceed 1: only the low clip bites
            t_out.append(p * (g - torch.linalg.vecdot(g, p)[:, None]))
            lb_out.append(w * lb)
            b_out.append(w * bn)
    if not want_grad:
        return torch.cat(d), None
    return torch.cat(d), (torch.cat(t_out), torch.cat(lb_out), torch.cat(b_out))


def neighbour_terms(memory, norms, idx, wv, a, la, h_a, *, want_grad: bool, low_precision: bool = False):
    """Divergences and gradient pieces of the smoothness term's neighbour rows.

    ``memory`` N x D; ``norms`` its row norms; ``idx`` B x K neighbour rows (padded); ``wv``
    B x K weights (zero for padding); ``a``, ``la`` the batch's ranking vectors and their logs
    (B x N); ``h_a`` = <a, log a>. Returns ``d`` (B x K, KL(a||b) + KL(b||a)) and, with
    ``want_grad``, for an upstream gradient of 1 on sum(wv * d): ``g_a`` (B x N, the gradient
    into a), ``grad_rows``, a (B + B K) x N buffer whose last B K rows hold the gradient into
    the neighbour logits M[idx] M^T, the memory in the products' dtype, for
    ``backward_products``, and the ``Lease`` on those buffers (keep it as long as them).

    ``low_precision`` runs the memory products with bfloat16 operands (float32 accumulation;
    the logits and the gradient rows are rounded to bfloat16).
    """
    b, kk = idx.shape
    n, dim = memory.shape
    dt = memory.dtype
    flat = idx.reshape(-1)
    beta = torch.arange(b, device=memory.device).repeat_interleave(kk)
    op = torch.bfloat16 if low_precision else dt
    m_op = memory
    if op != dt:
        m_op = workspace.take(memory.shape, op, memory.device).copy_(memory)
    # room for the batch rows' gradient in front, so backward needs one product per factor
    buf = workspace.take((b + b * kk, n), op, memory.device)
    z = torch.mm(m_op.index_select(0, flat), m_op.T, out=buf[b:])       # B K x N logits
    # Softmax shift: an upper bound of every logit of the row (Cauchy-Schwarz); it is tight
    # enough unless the norms are very unequal, and then the exact row maximum is used.
    nq = norms[flat]
    shift = nq * norms.max() * (1.0 + 1e-6) + 1e-30
    if bool(((shift - nq * nq) > _MAX_GAP).any()):
        shift = z.amax(1).to(dt)
    kern = _cpu_kernels() if (memory.device.type == "cpu" and dt == torch.float32) else None
    if kern is not None:
        kern.match_torch_threads()
        stats = torch.empty(b * kk, 5, dtype=dt)
        kern.row_stats(_numpy(z), shift.numpy(), a.numpy(), la.numpy(), kk, stats.numpy())
    else:
        stats = _row_stats_torch(z, shift, a, la, kk)
    s, ez, el, az, emin = stats.unbind(1)
    log_s = torch.log(s)
    lse = shift + log_s
    hb = ez / s - log_s                                                 # <b, log b>
    b_la = el / s                                                       # <b, log a>
    d = h_a[beta] + hb - b_la - (az - lse)                              # - <a, log b>
    clipped = emin < CLIP * s  # some softmax value of the row is below the clip
    rows_c = clipped.nonzero().squeeze(1)
    z_c = z[rows_c].to(dt) if len(rows_c) else None
    g_a = None
    if want_grad:
        wf = wv.reshape(-1) * ~clipped
        c = 1.0 - hb + b_la
        bsum = torch.empty(b, n, dtype=dt, device=memory.device)
        lsum = torch.empty(b, n, dtype=dt, device=memory.device)
        if kern is not None:  # the kernel cannot write the array it reads (it would not vectorise)
            grad = workspace.take(buf.shape, op, memory.device)
            kern.row_gradient(_numpy(z), lse.numpy(), c.numpy(), wf.numpy(), a.numpy(), la.numpy(), kk,
                              _numpy(grad[b:]), bsum.numpy(), lsum.numpy())
            workspace.give(buf)
            buf = grad
        else:
            _row_gradient_torch(z, lse, c, wf, a, la, kk, bsum, lsum)
    if len(rows_c):
        d_c, extra = _general_rows(z_c, beta[rows_c], wv.reshape(-1)[rows_c], a, la, h_a, want_grad)
        d = d.index_put((rows_c,), d_c)
        if want_grad:
            t_c, lb_c, b_c = extra
            buf[b + rows_c] = t_c.to(op)
            lsum.index_add_(0, beta[rows_c], lb_c)
            bsum.index_add_(0, beta[rows_c], b_c)
    if want_grad:
        g_a = wv.sum(1, keepdim=True) * (la + 1.0) - lsum - bsum / a
        return d.view(b, kk), (g_a, buf, m_op, Lease(buf, *([m_op] if m_op is not memory else [])))
    workspace.give(buf)
    if m_op is not memory:
        workspace.give(m_op)
    return d.view(b, kk), None


def backward_products(grad_rows, m_op, g_zb, f, memory, idx, g_smooth):
    """The memory products of the backward pass. ``grad_rows`` is the buffer from
    ``neighbour_terms`` (its first B rows are overwritten with ``g_zb``, the gradient into the
    batch logits f M^T, so one product serves both logit matrices); ``m_op`` the memory in the
    products' dtype. Returns the gradients into the memory through the second factor of both
    logit matrices (N x D), into f (B x D, always in full precision) and into the neighbour
    rows M[idx] through the first factor (B K x D)."""
    b = f.shape[0]
    op = grad_rows.dtype
    grad_rows[:b] = g_zb
    rhs = torch.cat([f, memory.index_select(0, idx.reshape(-1)) * g_smooth]).to(op)
    if op == memory.dtype:
        grad_m = grad_rows.T @ rhs
    else:
        low = torch.mm(grad_rows.T, rhs, out=workspace.take(memory.shape, op, memory.device))
        grad_m = low.to(memory.dtype)
        workspace.give(low)
    g_q = (grad_rows[b:] @ m_op).to(memory.dtype) * g_smooth
    return grad_m, g_zb @ memory, g_q
