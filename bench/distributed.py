"""Benchmark: PICA training throughput (samples/s) on 1 and 2 data-parallel processes.

The 2-process run is the real thing (``torch.distributed.run``, Gloo on the CPU, NCCL on GPUs):
each rank forwards half of every global batch, the PUI matrix and prior are computed over the
all-gathered batch, BatchNorm statistics are global, gradients are averaged. Both runs use the
same global batch, OrganAMNIST images, float32, one torch thread per process.

Baselines in the same run: 1 process with 1 thread, and 1 process with as many threads as the
2 processes have together. On this 2-core CPU machine, 2 processes against 1 process using both
cores shows the OVERHEAD of data parallelism (the gathers, the gradient all-reduce, the
augmentation of the whole global batch on every rank, processes sharing two cores), not a
speed-up: that needs one GPU (or one whole machine) per rank. With GPUs, ``--nproc`` takes one
rank per GPU.
Usage: ``python bench/distributed.py [--steps 6] [--batch 64] [--nproc 1 2]``; results go to
``bench/results/distributed/``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
DATA = ROOT.parent / "shared" / "data" / "organamnist" / "organamnist.npz"


def worker(out: str, steps: int, batch: int, device: str, threads: int = 1) -> None:
    """One rank: train PICA for ``steps`` global batches; rank 0 writes the step times."""
    import numpy as np
    import torch

    from core.dataset import SampleSet
    from core.jobs import distributed as dist
    from core.methods.pica import PICA

    torch.set_num_threads(threads)
    if dist.launched():
        dist.init(device)
    d = np.load(DATA)
    n = batch * ((steps + 1) // 2)          # one pass per head covers the steps
    x = d["train_images"][:n]
    data = SampleSet(ids=[f"organ/{i}" for i in range(n)], x=x)
    m = PICA(batch_size=batch, epochs=1, n_clusters=11, n_overclusters=77, eval_samples=1,
             device=device)
    times = []
    job = dist.RankJob(m, data, on_progress=lambda p: times.append(time.perf_counter()))
    job.run()
    if dist.is_main():
        # the first step includes start-up (allocations, first all-reduce): timed from its end
        rate = batch * (len(times) - 1) / (times[-1] - times[0])
        Path(out).write_text(json.dumps({"steps": len(times), "samples_per_s": rate,
                                         "world_size": dist.world_size(),
                                         "backend": dist.context().backend if dist.context() else "none"}))
    dist.shutdown()


def measure(nproc: int, steps: int, batch: int, device: str, threads: int = 1) -> dict:
    out = tempfile.mktemp(suffix=".json")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    args = [__file__, "--worker", out, "--steps", str(steps), "--batch", str(batch), "--device", device,
            "--threads", str(threads)]
    if nproc == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--standalone", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, timeout=1800, capture_output=True)
    r = json.loads(Path(out).read_text())
    r["wall_s"] = time.perf_counter() - t0
    os.unlink(out)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.batch, args.device, args.threads)
        return 0
    print(f"CPU: {cpu_model()}; device {args.device}; PICA ResNet-18, global batch {args.batch} "
          f"(+ 3 strong copies), {args.steps} steps, float32")
    rows = {}
    for n in args.nproc:
        rows[f"{n} process(es), 1 thread each"] = measure(n, args.steps, args.batch, args.device)
    most = max(args.nproc)
    if args.device == "cpu" and most > 1:
        rows[f"1 process, {most} threads"] = measure(1, args.steps, args.batch, args.device, most)
    first = next(iter(rows.values()))["samples_per_s"]
    print(f"{'run':<32}{'samples/s':>10}{'vs first':>10}{'wall s':>9}")
    for name, r in rows.items():
        print(f"{name:<32}{r['samples_per_s']:>10.2f}{r['samples_per_s'] / first:>10.2f}{r['wall_s']:>9.1f}")
    if args.device == "cpu" and most > 1:
        ratio = (rows[f"{most} process(es), 1 thread each"]["samples_per_s"]
                 / rows[f"1 process, {most} threads"]["samples_per_s"])
        load = os.getloadavg()[0]
        print(f"{most} processes vs 1 process with {most} threads on the same cores: x{ratio:.2f} "
              f"(load average {load:.1f}). Both do the same arithmetic on the same cores, so any "
              "difference is how the cores are shared (threads spin-wait on a busy machine) plus "
              "the data-parallel overhead (gathers, all-reduce, augmenting the whole global batch "
              "on every rank); it is not a data-parallel speed-up, which needs a GPU or a machine "
              "per rank.")
    res = ROOT / "bench" / "results" / "distributed"
    res.mkdir(parents=True, exist_ok=True)
    (res / f"results_{args.device}.json").write_text(json.dumps(
        {"cpu": cpu_model(), "device": args.device, "batch": args.batch, "steps": args.steps,
         "load_average_1min": os.getloadavg()[0],
         "runs": rows}, indent=2))
    print(f"results: {res / f'results_{args.device}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
