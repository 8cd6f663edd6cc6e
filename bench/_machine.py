"""What every benchmark prints about the machine it ran on."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else platform) and its logical CPU count."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def hardware(device: str = "auto") -> str:
    """``cpu_model()``, and the GPU's name when ``device`` resolves to CUDA (tables run on a GPU
    must say so: their speed and, through non-deterministic kernels, their figures differ)."""
    import torch

    cpu = cpu_model()
    if (device == "auto" or str(device).startswith("cuda")) and torch.cuda.is_available():
        return f"{cpu}; GPU {torch.cuda.get_device_name(0)}"
    return cpu
