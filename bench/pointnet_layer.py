"""Micro-benchmark: PointNet encoder forward + backward, fused max-pooled Linear+BN+ReLU vs plain.

Both encoders share one state dict and run interleaved in one process, in blocks of ``--block``
steps each (min over all steps; the first step of each block is not timed), so a busy machine
slows both alike. Untimed warm-up matters: right after the fused encoder, the plain encoder's
first steps re-fault its 134 MB activations (up to ~4.6 s instead of ~2.2 s per step here).
Default: batch 32 x 1024 points, one torch thread, float32 and bf16 autocast, training mode
(batch statistics), as a DeepDiffusion training step runs it. Example:
  python bench/pointnet_layer.py --batch 32 --points 1024 --repeats 3 --block 3 --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models.pointnet import PointNetEncoder  # noqa: E402


def step(enc: PointNetEncoder, x: torch.Tensor, g: torch.Tensor, bf16: bool) -> float:
    enc.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        h = enc(x)
    (h.float() * g).sum().backward()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="blocks per encoder")
    ap.add_argument("--block", type=int, default=3, help="consecutive steps per block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="fp32,bf16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fused = PointNetEncoder(254).train()
    plain = PointNetEncoder(254, fused=False).train()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(args.batch, args.points, 3)
    x = x / x.norm(dim=-1).amax(dim=1, keepdim=True).unsqueeze(-1)
    g = torch.randn(args.batch, 254)
    for mode in args.modes.split(","):
        bf16 = mode == "bf16"
        tf, tp = [], []
        for _ in range(args.repeats):
            step(fused, x, g, bf16)  # the first step of a block warms up
            tf += [step(fused, x, g, bf16) for _ in range(args.block)]
            step(plain, x, g, bf16)
            tp += [step(plain, x, g, bf16) for _ in range(args.block)]
        f, p = min(tf), min(tp)
        print(f"{mode}: B {args.batch} x P {args.points}, {args.threads} thread(s): fused {f:.3f} s, "
              f"plain {p:.3f} s, fused/plain {f / p:.2f} (x{p / f:.2f} faster)", flush=True)


if __name__ == "__main__":
    main()
