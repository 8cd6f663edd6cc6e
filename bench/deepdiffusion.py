"""Benchmark: DeepDiffusion on VesselMNIST3D and AdrenalMNIST3D, with baselines and loss scaling.

Shapes: masks (VesselMNIST3D 28^3, AdrenalMNIST3D 64^3) -> largest component -> mesh -> 1024
area-weighted points -> unit sphere (``core.preprocess.shapes.mask_to_points``), official splits.
DeepDiffusion trains on the training split (labels unused) and is evaluated on the test split:
retrieval mAP (overall and class-balanced) and the inner-ear Table 1 (overall means). Baselines
in the same run, on the same test shapes: the untrained PointNet encoder (the memory's
initialisation), the D2 shape distribution (histogram of distances between random point pairs),
and PCA of the voxels (fitted on the training masks; 28^3 masks for both data sets).

Speed: epoch time (and samples/s) next to the public PyTorch reference measured on the same
1,335 VesselMNIST3D training shapes at batch 32 (about 100 s per epoch, 13-14 samples/s); and the
LMR loss step (forward + backward, B 32, D 256) at memory sizes 1,335 / 10,000 / 100,000 next to
a reference-style implementation that forms the full N x N softmax(M M^T), timed in the same run
where it fits in memory.

Reduced settings are flags (a 2-core CPU shared with other jobs is far from the paper's GPU):
  --epochs E        DeepDiffusion epochs per data set
  --train-limit N   train on the first N training shapes only (0 = all)
Example: python bench/deepdiffusion.py --epochs 1 --train-limit 256
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import core  # noqa: E402,F401  (sets THP_MEM_ALLOC_ENABLE before torch loads)
SHARED = Path(os.environ.get("LATENTMAP_SHARED", ROOT.parent / "shared"))
CACHE = ROOT / ".cache" / "bench_deepdiffusion"

DATASETS = {
    "vesselmnist3d": ("vesselmnist3d/vesselmnist3d.npz", "vesselmnist3d/vesselmnist3d.npz",
                      ["vessel", "aneurysm"]),
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d_64.npz", "adrenalmnist3d/adrenalmnist3d.npz",
                       ["normal", "hyperplasia"]),
}
REFERENCE_SPEED = {"epoch_s": 100.0, "samples_per_s": 13.5, "peak_gb": 1.6,
                   "loss_step_s": {1335: 0.04, 10000: 0.30, 100000: 11.8}}


def points_for(name: str, n_points: int):
    """(points, labels, split) for train + test, cached on disk (the sampler is seeded per shape)."""
    from core.preprocess.shapes import mask_to_points

    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"{name}_{n_points}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["y"], z["split"]
    rel, _, _ = DATASETS[name]
    d = np.load(SHARED / "data" / rel)
    xs, ys, sp = [], [], []
    for split in ("train", "test"):
        masks = d[f"{split}_images"]
        for i, m in enumerate(masks):
            xs.append(mask_to_points(m > 0, n_points, seed=i))
        ys.append(d[f"{split}_labels"].ravel())
        sp += [split] * len(masks)
    x, y, split = np.stack(xs).astype(np.float32), np.concatenate(ys).astype(int), np.array(sp)
    np.savez(cache, x=x, y=y, split=split)
    return x, y, split


def d2_features(points: np.ndarray, n_pairs: int = 4096, bins: int = 64, seed: int = 0) -> np.ndarray:
    """Osada et al.'s D2: histogram of distances between random point pairs (unit-sphere clouds)."""
    rng = np.random.default_rng(seed)
    n, p, _ = points.shape
    i, j = rng.integers(0, p, (2, n_pairs))
    dist = np.linalg.norm(points[:, i] - points[:, j], axis=-1)             # n x n_pairs
    edges = np.linspace(0, 2.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, bins - 1)
    hist = np.zeros((n, bins))
    np.add.at(hist, (np.repeat(np.arange(n), n_pairs), idx.ravel()), 1.0)
    return hist / n_pairs


def voxel_pca_features(name: str, n_components: int = 64) -> np.ndarray:
    from sklearn.decomposition import PCA

    _, rel, _ = DATASETS[name]
    d = np.load(SHARED / "data" / rel)
    tr = (d["train_images"] > 0).reshape(len(d["train_images"]), -1).astype(np.float32)
    te = (d["test_images"] > 0).reshape(len(d["test_images"]), -1).astype(np.float32)
    return PCA(n_components, random_state=0).fit(tr).transform(te)


def evaluate(features: np.ndarray, labels: np.ndarray, names) -> dict:
    from core.metrics import retrieval_map, table1

    r = retrieval_map(features, labels, class_names=names, curve=False)
    t = table1(features, labels, class_names=names)
    return {"map": r.map, "map_balanced": r.map_balanced,
            **{f"map_{k}": v for k, v in r.map_per_class.items()},
            "t1_mean_acc": t.value("mean accuracy"), "t1_mean_roc_auc": t.value("mean roc_auc"),
            "t1_mean_ap": t.value("mean ap"), "t1_max_f1": t.value("max f1"),
            "t1_mean_pr_auc": t.value("mean pr_auc")}


def chance_map(labels: np.ndarray, names, n: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    from core.metrics import retrieval_map

    runs = [retrieval_map(rng.normal(size=(len(labels), 16)), labels, class_names=names, curve=False)
            for _ in range(n)]
    return {"map": float(np.mean([r.map for r in runs])), "map_balanced": float(np.mean([r.map_balanced for r in runs]))}


def run_dataset(name: str, args) -> tuple[list[dict], dict]:
    import torch

    from core.dataset import SampleSet
    from core.methods.deepdiffusion import DeepDiffusion

    names = DATASETS[name][2]
    t0 = time.perf_counter()
    x, y, split = points_for(name, args.n_points)
    print(f"[{name}] points {x.shape} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    train_idx = np.flatnonzero(split == "train")
    if args.train_limit:
        train_idx = train_idx[:args.train_limit]
    test_idx = np.flatnonzero(split == "test")
    keep = np.r_[train_idx, test_idx]
    data = SampleSet(ids=np.array([f"{name}/{i}" for i in keep]), x=x[keep], y=y[keep],
                     label_names=names, split=split[keep])
    test = data.by_split("test")
    y_test = y[test_idx]
    rows = []

    def add(method, feats, note=""):
        t = time.perf_counter()
        m = evaluate(feats, y_test, names)
        rows.append({"dataset": name, "method": method, "note": note, **m})
        print(f"[{name}] {method:<26} mAP {m['map']:.4f}  balanced {m['map_balanced']:.4f}  "
              f"T1 mean ROC-AUC {m['t1_mean_roc_auc']:.3f}  ({time.perf_counter() - t:.1f} s eval)", flush=True)

    ch = chance_map(y_test, names)
    rows.append({"dataset": name, "method": "chance (random features)", "note": "mean of 5",
                 "map": ch["map"], "map_balanced": ch["map_balanced"]})
    print(f"[{name}] chance                     mAP {ch['map']:.4f}  balanced {ch['map_balanced']:.4f}")
    add("D2 shape distribution", d2_features(test.x), "64 bins, 4096 pairs")
    add("PCA of voxels", voxel_pca_features(name), "64 components, 28^3 masks, fit on train")

    dd = DeepDiffusion(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lam=args.lam, k=args.k,
                       out_dim=args.out_dim, augment=True, seed=0, device=args.device, eval_every=0,
                       mixed_precision=args.mixed_precision)
    gen = dd.steps(data)
    t_start = time.perf_counter()
    first = next(gen)  # builds the model and the memory (untrained features) first
    speed = {}
    # untrained encoder = the features the memory is initialised with: evaluate a fresh copy
    untrained = DeepDiffusion(**dd.get_params())
    untrained._build()
    add("untrained PointNet", untrained._features(test.x).cpu().numpy())
    epoch_times, losses, t_epoch = [], [first.losses], t_start
    t_train = time.perf_counter()
    for p in gen:
        losses.append(p.losses)
        if p.epoch_end:
            epoch_times.append(time.perf_counter() - t_epoch)
            t_epoch = time.perf_counter()
            print(f"[{name}] epoch {p.epoch + 1}/{args.epochs}: loss {p.losses['loss']:.3f} "
                  f"(fit {p.losses['fit']:.3f}, smooth {p.losses['smooth']:.4f}), "
                  f"{epoch_times[-1]:.1f} s, {p.samples_per_s:.1f} samples/s", flush=True)
    train_s = time.perf_counter() - t_train
    n_train = len(train_idx)
    spe = max(1, n_train // min(args.batch_size, n_train))
    rate = spe * args.batch_size * args.epochs / max(time.perf_counter() - t_start, 1e-9)
    speed = {"dataset": name, "n_train": n_train, "epochs": args.epochs,
             "epoch_s": float(np.mean(epoch_times)) if epoch_times else float("nan"),
             "samples_per_s": rate, "epoch_s_1335": 1335 / rate,
             "loss_first": losses[0]["loss"], "loss_last": losses[-1]["loss"], "train_s": train_s}
    add(f"DeepDiffusion ({args.epochs} ep)", dd.transform(test.x),
        f"{n_train} train shapes, batch {args.batch_size}, lr {args.lr}")
    return rows, speed


def reference_style_loss(h, memory, src, k, lam):
    """As the public PyTorch reference does it: the full N x N softmax(M M^T), rows gathered after."""
    import torch

    x = h + 1e-8
    f = x / torch.sqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))
    logits = f @ memory.T
    nm = torch.sqrt(torch.clamp((memory * memory).sum(1), 1e-8, 1e8))
    s = (1 + logits / nm) / 2
    kth = torch.topk(s, k, dim=1).values[:, -1:]
    bi, ni = (s >= kth).nonzero(as_tuple=True)
    t_all = torch.softmax(memory @ memory.T, 1)                             # N x N
    a = torch.softmax(logits, 1)[bi].clamp(1e-6, 1)
    b = t_all[ni].clamp(1e-6, 1)
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    d = ((a - b) * (a.log() - b.log())).sum(1)
    fit = (torch.logsumexp(logits, 1) - logits[torch.arange(len(src)), src]).sum()
    return fit + lam * (s[bi, ni] * d).sum()


def time_loss(sizes, *, k: int, repeats: int = 3, full_limit: int = 12000) -> list[dict]:
    import torch

    from core.methods.deepdiffusion import lmr_loss

    out = []
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        memory = torch.nn.functional.normalize(torch.randn(n, 256, generator=g), dim=1).requires_grad_()
        h = torch.randn(32, 256, generator=g, requires_grad=True)
        src = torch.randint(0, n, (32,), generator=g)
        row = {"N": n, "k": k}
        for label, fn, ok in (("ours_s", lambda: lmr_loss(h, memory, src, k, 1.0)[0], True),
                              ("ours_bf16_s", lambda: lmr_loss(h, memory, src, k, 1.0,
                                                               precision="bfloat16")[0], True),
                              ("full_nxn_s", lambda: reference_style_loss(h, memory, src, k, 1.0),
                               n <= full_limit)):
            if not ok:
                row[label] = float("nan")
                continue
            ts = []
            for _ in range(repeats):
                memory.grad = h.grad = None
                t = time.perf_counter()
                fn().backward()
                ts.append(time.perf_counter() - t)
            row[label] = min(ts)
        row["reference_s"] = REFERENCE_SPEED["loss_step_s"].get(n, float("nan"))
        print(f"loss step N={n:>6} k={k}: ours {row['ours_s']:.3f} s (bf16 products "
              f"{row['ours_bf16_s']:.3f} s), full N x N here "
              f"{row['full_nxn_s']:.3f} s, reference (issue) {row['reference_s']} s", flush=True)
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="vesselmnist3d,adrenalmnist3d")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lam", type=float, default=0.6)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out-dim", type=int, default=254)
    ap.add_argument("--n-points", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mixed-precision", default="auto", choices=("auto", "bf16", "off"),
                    help="bf16 runs the encoder in bfloat16 on the CPU too (AMX)")
    ap.add_argument("--loss-sizes", default="1335,10000,100000")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 is much faster on an oversubscribed machine")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "deepdiffusion"))
    args = ap.parse_args(argv)

    import torch

    from core.metrics.report import write_table

    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}, load {os.getloadavg()[0]:.1f}", flush=True)
    out = Path(args.out)
    rows, speeds = [], []
    loss_rows = time_loss([int(s) for s in args.loss_sizes.split(",") if s], k=args.k)
    if not args.skip_training:
        for name in args.datasets.split(","):
            r, s = run_dataset(name, args)
            rows += r
            speeds.append(s)
    files = write_table(out, "loss_step", {f"N={r['N']}": r for r in loss_rows}, digits=4,
                        title="LMR loss step (forward + backward), B 32, D 256")
    if rows:
        files += write_table(out, "retrieval", {f"{r['dataset']} / {r['method']}": r for r in rows},
                             title=f"test retrieval and Table 1 (overall), {args.epochs} epoch(s)")
    if speeds:
        files += write_table(out, "speed", {s["dataset"]: s for s in speeds}, digits=2,
                             title="DeepDiffusion training speed")
        for s in speeds:
            print(f"[{s['dataset']}] {s['samples_per_s']:.1f} samples/s -> {s['epoch_s_1335']:.0f} s per "
                  f"1,335-shape epoch (reference: {REFERENCE_SPEED['epoch_s']:.0f} s, "
                  f"{REFERENCE_SPEED['samples_per_s']} samples/s; target half)")
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    print("written:", ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
