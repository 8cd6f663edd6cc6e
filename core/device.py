"""The engine runs on CUDA (with mixed precision) when present, else on the CPU."""
from __future__ import annotations

import contextlib
import functools
import warnings


def pick_device(device: str = "auto"):
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def autocast(device, mode: str = "auto"):
    """Mixed precision for a forward pass. ``mode``: "auto" = bf16 on CUDA, exact float32 on the
    CPU; "bf16" = bf16 on both (CPUs with AMX run the matrix work ~1.4-3x faster; still
    deterministic for a seed, at bf16 precision); "off" = float32 everywhere."""
    import torch

    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"mixed precision must be auto, bf16 or off, got {mode!r}")
    if not uses_bf16(device, mode):
        return contextlib.nullcontext()
    kind = getattr(device, "type", str(device))
    if kind != "cuda" and not cpu_bf16_fast():
        _warn_slow_bf16()
    return torch.autocast("cuda" if kind == "cuda" else "cpu", dtype=torch.bfloat16)


def uses_bf16(device, mode: str = "auto") -> bool:
    """Whether mixed precision ``mode`` (see ``autocast``) computes in bf16 on ``device``."""
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"mixed precision must be auto, bf16 or off, got {mode!r}")
    kind = getattr(device, "type", str(device))
    return mode == "bf16" or (mode == "auto" and kind == "cuda")


@functools.lru_cache(maxsize=None)
def cpu_bf16_fast() -> bool:
    """Whether this CPU has bf16 instructions oneDNN uses (AVX-512 BF16 or AMX). Without them
    bf16 autocast is emulated: a convnet step measured 10x slower than float32 on an AVX2-only
    AMD EPYC, while AMX Xeons run it 1.4-3x faster."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_precision() -> str:
    """The mixed-precision mode to use when speed matters and bf16 results are acceptable
    (benchmarks): bf16 where the CPU runs it natively, else "auto" (bf16 on CUDA only)."""
    return "bf16" if cpu_bf16_fast() else "auto"


@functools.lru_cache(maxsize=None)
def _warn_slow_bf16() -> None:
    warnings.warn("bf16 mixed precision on a CPU without bf16 instructions (no AVX-512 BF16 or "
                  "AMX): it is emulated and several times slower than float32; use "
                  "mixed_precision='auto' here", RuntimeWarning, stacklevel=3)


def widen(t):
    """``t`` in float32 at least: bf16 autocast outputs are lifted, float64 stays float64 (a
    float64 run, as the distributed tests make, must not drop to float32 half-way)."""
    import torch

    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
