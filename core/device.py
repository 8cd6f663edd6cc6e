"""The engine runs on CUDA (with mixed precision) when present, else on the CPU."""
from __future__ import annotations

import contextlib


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
    return torch.autocast("cuda" if kind == "cuda" else "cpu", dtype=torch.bfloat16)


def uses_bf16(device, mode: str = "auto") -> bool:
    """Whether mixed precision ``mode`` (see ``autocast``) computes in bf16 on ``device``."""
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"mixed precision must be auto, bf16 or off, got {mode!r}")
    kind = getattr(device, "type", str(device))
    return mode == "bf16" or (mode == "auto" and kind == "cuda")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
