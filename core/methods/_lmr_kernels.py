"""Fused CPU kernels (numba) for the neighbour rows of the reference LMR loss.

Each kernel makes one pass over the (B k) x N logits, with the softmax, its statistics and the
gradient computed in registers. The same work written as torch operations takes about fifteen
passes over that array, each as slow as the memory products at N = 100,000.

numba has no vector ``exp`` here (llvmlite is built without SVML), so ``_exp`` below is Cephes'
``expf`` written with a bit cast, which LLVM vectorises (AVX-512: 16 lanes). It is within 2
ulp of float64 ``exp`` over the range used (tested). Logits may be float32 or bfloat16 (passed
as their raw 16-bit patterns, the way the bf16 memory products return them).
"""
from __future__ import annotations

import numpy as np

from ..projection import prepare_numba

prepare_numba()

import numba  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import types  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

# No "reassoc": exp's range reduction relies on (t + 1.5 * 2^23) - 1.5 * 2^23 rounding t.
_EXACT = {"nnan", "ninf", "nsz", "contract", "arcp"}
_FAST = True  # the kernels' sums may be reordered (vectorised reductions)


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of an integer."""
    if isinstance(bits, types.Integer):
        def codegen(context, builder, signature, args):
            v = args[0]
            if bits.bitwidth > 32:
                v = builder.trunc(v, ir.IntType(32))
            elif bits.bitwidth < 32:
                v = builder.zext(v, ir.IntType(32))
            return builder.bitcast(v, ir.FloatType())
        return types.float32(bits), codegen
    return None


@intrinsic
def _bits_from_f32(typingctx, x):
    if x == types.float32:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.uint32(x), codegen
    return None


@numba.njit(fastmath=_EXACT, cache=True, nogil=True)
def _exp(x):
    """float32 exp (Cephes expf): x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-7 polynomial."""
    x = min(max(x, np.float32(-87.3)), np.float32(88.3))
    n = (x * np.float32(1.44269504088896341) + np.float32(12582912.0)) - np.float32(12582912.0)
    r = x - n * np.float32(0.693359375)
    r = r - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    # 2^n by building the exponent field; n in [-126, 127] after the clamp
    return p * _f32_from_bits(np.uint32((np.int32(n) + np.int32(127)) << np.int32(23)))


def _load(x, j):
    """Element j of a float32 vector, or of a bfloat16 one stored as uint16 bit patterns."""


def _store(x, j, v):
    """Write v to element j, rounding to bfloat16 (nearest even, as torch) for uint16."""


@overload(_load, jit_options={"fastmath": _EXACT})
def _load_impl(x, j):
    if x.dtype == types.uint16:
        return lambda x, j: _f32_from_bits(np.uint32(x[j]) << np.uint32(16))
    return lambda x, j: np.float32(x[j])


@overload(_store, jit_options={"fastmath": _EXACT})
def _store_impl(x, j, v):
    if x.dtype == types.uint16:
        def store(x, j, v):
            bits = _bits_from_f32(np.float32(v))
            x[j] = np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
                             >> np.uint32(16))
        return store

    def store(x, j, v):
        x[j] = v
    return store


# The loops below work on 1-D row views and never write the array they read: either of
# those keeps LLVM from vectorising them (4x slower).
@numba.njit(fastmath=_FAST, cache=True, nogil=True, parallel=True)
def row_stats(z, shift, a, la, kk, out):
    """Per row r (batch sample beta = r // kk), with e = exp(z_r - shift_r):
    out[r] = (sum e, sum e (z - shift), sum e la_beta, sum a_beta z, min e).

    The minimum is taken over the bit patterns of e (positive floats order as their bits):
    LLVM vectorises an integer min reduction but not a float one."""
    rows, n = z.shape
    for r in numba.prange(rows):
        zr = z[r]
        ar = a[r // kk]
        lar = la[r // kk]
        u = np.float32(shift[r])
        s = np.float32(0.0)
        ez = np.float32(0.0)
        el = np.float32(0.0)
        az = np.float32(0.0)
        emin = np.uint32(0x7F800000)  # +inf
        for j in range(n):
            x = _load(zr, j)
            e = _exp(x - u)
            s += e
            ez += e * (x - u)
            el += e * lar[j]
            az += ar[j] * x
            eb = _bits_from_f32(e)
            emin = eb if eb < emin else emin
        out[r, 0] = s
        out[r, 1] = ez
        out[r, 2] = el
        out[r, 3] = az
        out[r, 4] = _f32_from_bits(emin)


@numba.njit(fastmath=_FAST, cache=True, nogil=True, parallel=True)
def row_gradient(z, lse, c, wv, a, la, kk, out, bsum, lsum):
    """For unclipped rows, b_r = exp(z_r - lse_r), write the gradient of
    sum_r wv_r KLsym(a_beta, b_r) with respect to the logits z_r to ``out``:
    wv_r (b_r (log b_r - la_beta + c_r) - a_beta), c_r = 1 - <b_r, log b_r> + <b_r, la_beta>.
    Also bsum[beta] = sum_r wv_r b_r and lsum[beta] = sum_r wv_r log b_r over beta's rows,
    which the gradient into a_beta needs. Batch samples run in parallel (no shared writes)."""
    rows, n = z.shape
    for beta in numba.prange(rows // kk):
        bs = bsum[beta]
        ls = lsum[beta]
        ar = a[beta]
        lar = la[beta]
        bs[:] = 0.0
        ls[:] = 0.0
        for r in range(beta * kk, beta * kk + kk):
            w = np.float32(wv[r])
            l0 = np.float32(lse[r])
            cr = np.float32(c[r])
            zr = z[r]
            o = out[r]
            for j in range(n):
                x = _load(zr, j) - l0                                # log b
                b = _exp(x)
                bs[j] += w * b
                ls[j] += w * x
                _store(o, j, w * (b * (x + cr - lar[j]) - ar[j]))


def match_torch_threads() -> None:
    """Use as many threads as torch does (numba's setting is per calling thread)."""
    import torch

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def warm() -> None:
    """Compile (or load from the disk cache) the kernels for float32 and bfloat16 logits."""
    f = np.zeros((2, 3), np.float32)
    v = np.zeros(2, np.float32)
    out = np.zeros((2, 5), np.float32)
    for z in (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.uint16)):
        row_stats(z, v, f[:1], f[:1], 2, out)
        row_gradient(z, v, v, v, f[:1], f[:1], 2, z.copy(), f[:1].copy(), f[:1].copy())
