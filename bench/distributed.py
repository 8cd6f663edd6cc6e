"""Benchmark: training throughput (samples/s) of every method on 1 and 2 data-parallel processes.

The 2-process runs are the real thing (``torch.distributed.run``, Gloo on the CPU, NCCL on
GPUs): each rank forwards its rows of every global batch, the losses see the gathered outputs,
BatchNorm statistics are global, gradients are averaged (``core.jobs.distributed``). All runs
use the same global batch, real shared data (OrganAMNIST images, VesselMNIST3D volumes and
point clouds sampled from them), float32, one torch thread per process.

Baselines in the same run: 1 process with 1 thread, and 1 process with as many threads as the
2 processes have together. On this 2-core CPU machine, 2 processes against 1 process using both
cores shows the OVERHEAD of data parallelism (the gathers, the gradient all-reduce, augmenting
the whole global batch on every rank, DeepDiffusion's memory initialised on every rank,
processes sharing two cores), not a speed-up: that needs one GPU (or one whole machine) per
rank. With GPUs, ``--nproc`` takes one rank per GPU.

One launch per configuration trains every method in turn (a few steps each, small models). A
method's samples/s is timed over its training steps: only intervals between two training steps
count (the k-means passes, the memory initialisation and each epoch's last step with its
validation or final clustering are left out). Its CPU seconds (user + system, summed over the
ranks) are recorded too, since wall time on a shared machine depends on the load.
Usage: ``python bench/distributed.py [--methods pica simclr ...] [--steps 5] [--nproc 1 2]``;
results go to ``bench/results/distributed/``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
DATA = ROOT.parent / "shared" / "data"

VOL = {"batch_size": 8, "widen_factor": 0.25, "epochs": 1, "seed": 0}
#: name -> (registry table, registry name, data, params, samples per training step); the global
#: batch is the same for every process count. Small on purpose: a few CPU minutes in all.
BENCH = {
    "pica": ("methods", "pica", "images", {"batch_size": 32, "epochs": 1, "n_repeat": 1, "n_clusters": 11,
                                           "n_overclusters": 33, "eval_samples": 1, "bn_samples": 0}, 32),
    "deepcluster": ("methods", "deepcluster", "images", {"batch_size": 32, "epochs": 1, "backbone": "resnet18",
                                                         "n_clusters": 11, "bn_samples": 0}, 32),
    "fixmatch": ("methods", "fixmatch", "images", {"batch_size": 16, "mu": 1, "epochs": 1, "small_input": True},
                 32),
    "cluster-head": ("finetuners", "cluster-head", "images", {"batch_size": 32, "epochs": 1, "patience": 0}, 32),
    "deepdiffusion": ("methods", "deepdiffusion", "points", {"batch_size": 8, "epochs": 1, "k": 5,
                                                              "eval_every": 0, "memory_init": "batch"}, 8),
    "simclr": ("methods", "simclr", "volumes", VOL, 8),
    "byol": ("methods", "byol", "volumes", VOL, 8),
    "simsiam": ("methods", "simsiam", "volumes", VOL, 8),
    "masked": ("methods", "masked", "volumes", VOL, 8),
    "residual-ssl": ("methods", "residual-ssl", "volumes", {**VOL, "ae_epochs": 1}, 8),
    "anomaly-finetune": ("finetuners", "residual-ssl", "volumes", {"batch_size": 8, "widen_factor": 0.25,
                                                                   "epochs": 1, "seed": 0}, 8),
}


def _data(kind: str, steps: int, batch: int):
    """Real data for ``steps`` global batches of ``batch`` (one epoch)."""
    import numpy as np

    from core.dataset import SampleSet

    n = steps * batch
    if kind == "images":
        d = np.load(DATA / "organamnist" / "organamnist.npz")
        y = d["train_labels"][:, 0].astype(int)
        # a labelled training split for the supervised stages, a small val split for their epochs
        x = np.concatenate([d["train_images"][:n], d["val_images"][:16]])
        lab = np.concatenate([y[:n], d["val_labels"][:16, 0].astype(int)])
        onehot = np.eye(11, dtype=np.float32)[lab]
        split = np.array(["train"] * n + ["val"] * 16)
        return SampleSet(ids=np.array([f"organ/{i}" for i in range(len(x))]), x=x, y=onehot,
                         label_names=[str(c) for c in range(11)], split=split)
    d = np.load(DATA / "vesselmnist3d" / "vesselmnist3d.npz")
    xs, ys, split = [], [], []
    for s, k in (("train", n), ("val", 8), ("test", 4)):   # a quarter aneurysms in every split
        lab = d[f"{s}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(lab == 0)[:k - k // 4], np.flatnonzero(lab == 1)[:k // 4]])
        xs.append(d[f"{s}_images"][pick])
        ys.append(lab[pick].astype(int))
        split += [s] * len(pick)
    x, y, split = np.concatenate(xs), np.concatenate(ys), np.array(split)
    if kind == "points":
        from core.preprocess.shapes import mask_to_points

        x = np.stack([mask_to_points(m > 0, 256, seed=i) for i, m in enumerate(x)])
    return SampleSet(ids=np.array([f"v{i}" for i in range(len(x))]), x=x, y=y,
                     label_names=["vessel", "aneurysm"], split=split)


def worker(out: str, methods: list[str], steps: int, device: str, threads: int = 1) -> None:
    """One rank: train each method for about ``steps`` global batches; rank 0 writes the rates."""
    import torch

    from core.jobs import distributed as dist
    from core.methods.registry import get_finetuner, get_method

    torch.set_num_threads(threads)
    if dist.launched():
        dist.init(device)
    results = {}
    for name in methods:
        table, reg, kind, params, per_step = BENCH[name]
        cls = (get_method if table == "methods" else get_finetuner)(reg)
        batch = params["batch_size"] * (1 + params.get("mu", 0))
        extra = {"steps_per_epoch": steps} if name == "fixmatch" else {}
        m = cls(**params, **extra, device=device)
        data = _data(kind, steps, batch)
        events: list[tuple] = []

        def on_progress(p, events=events):
            training = bool(p.losses) and "kmeans" not in p.losses  # not a k-means pass / memory init
            events.append((time.perf_counter(), training, bool(p.epoch_end)))

        dist.barrier()
        cpu0 = time.process_time()
        dist.RankJob(m, data, on_progress=on_progress).run()
        cpu = float(dist.sum_over_ranks(time.process_time() - cpu0))
        if dist.is_main():
            # time between two consecutive training steps, the later not ending an epoch (whose
            # validation / final clustering / evaluation is not training throughput)
            dts = [b[0] - a[0] for a, b in zip(events, events[1:]) if a[1] and b[1] and not b[2]]
            rate = per_step * len(dts) / sum(dts) if dts else float("nan")
            results[name] = {"samples_per_s": rate, "timed_steps": len(dts), "cpu_s": cpu,
                             "samples_per_step": per_step}
    if dist.is_main():
        Path(out).write_text(json.dumps({"world_size": dist.world_size(), "methods": results,
                                         "backend": dist.context().backend if dist.context() else "none"}))
    dist.shutdown()


def measure(nproc: int, methods, steps: int, device: str, threads: int = 1) -> dict:
    out = tempfile.mktemp(suffix=".json")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    args = [__file__, "--worker", out, "--methods", *methods, "--steps", str(steps), "--device", device,
            "--threads", str(threads)]
    if nproc == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--standalone", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=3600, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(Path(out).read_text())
    r["wall_s"] = time.perf_counter() - t0
    r["launch_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    r["load_average_1min"] = os.getloadavg()[0]
    os.unlink(out)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=list(BENCH), choices=list(BENCH))
    ap.add_argument("--steps", type=int, default=5, help="global batches per method (>= 3)")
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.methods, args.steps, args.device, args.threads)
        return 0
    print(f"CPU: {cpu_model()}; device {args.device}; float32, {args.steps} global batches per method, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    runs = {}
    for n in args.nproc:
        runs[f"{n} proc x 1 thread"] = measure(n, args.methods, args.steps, args.device)
    most = max(args.nproc)
    if args.device == "cpu" and most > 1:
        runs[f"1 proc x {most} threads"] = measure(1, args.methods, args.steps, args.device, most)
    names = list(runs)
    print(f"{'method':<18}" + "".join(f"{k:>22}" for k in names) + "   (samples/s; CPU s)")
    for m in args.methods:
        cells = []
        for k in names:
            r = runs[k]["methods"].get(m, {})
            cells.append(f"{r.get('samples_per_s', float('nan')):>11.2f} ({r.get('cpu_s', float('nan')):>6.1f} s)")
        print(f"{m:<18}" + "".join(f"{c:>22}" for c in cells))
    for k, r in runs.items():
        print(f"{k}: wall {r['wall_s']:.0f} s, CPU {r['launch_cpu_s']:.0f} s (launch included), "
              f"load average {r['load_average_1min']:.1f} at the end")
    if args.device == "cpu" and most > 1:
        print(f"On this CPU, {most} processes and 1 process with {most} threads do the same arithmetic on "
              "the same cores: any difference is how the cores are shared (and the load of other work) plus "
              "the data-parallel overhead (gathers, all-reduce, augmenting the whole global batch on "
              "every rank); it is not a data-parallel speed-up, which needs a GPU or a machine per rank.")
    res = ROOT / "bench" / "results" / "distributed"
    res.mkdir(parents=True, exist_ok=True)
    path = res / f"methods_{args.device}.json"
    path.write_text(json.dumps({"cpu": cpu_model(), "device": args.device, "steps": args.steps,
                                "configs": {m: BENCH[m][3] for m in args.methods}, "runs": runs}, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
