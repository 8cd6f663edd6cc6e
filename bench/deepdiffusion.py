"""Benchmark: DeepDiffusion on ModelNet10, VesselMNIST3D and AdrenalMNIST3D, with baselines.

Shapes: voxel masks (ModelNet10 30^3, VesselMNIST3D 28^3, AdrenalMNIST3D 64^3) -> largest
component -> mesh -> area-weighted points -> unit sphere (``core.preprocess.shapes.mask_to_points``),
official splits (ModelNet10's 8 empty grids left out). DeepDiffusion trains on the training
split (labels unused) and is evaluated on the test split: class-balanced retrieval mAP against
epochs (``--curve-every``) for each configuration (``default`` = the library's defaults,
``reference`` = ``DeepDiffusion.REFERENCE`` with the public code's batch 16, k 20, lambda 1),
and for the MedMNIST sets the inner-ear Table 1 (overall means). Baselines in the same run, on
the same test shapes: chance, the D2 shape distribution, PCA-64 of the voxels (fitted on the
training grids), the untrained PointNet in eval mode with its initial BatchNorm statistics (the
reference's memory initialisation) and with the statistics of one pass over the training
shapes (the default's). The CPU model heads every table.

Optional: ``--loss-sizes 1335,10000,100000`` times the LMR loss step (B 32, D 256) next to a
reference-style implementation that forms the full N x N softmax(M M^T).

Reduced settings are flags (a 2-core CPU shared with other jobs is far from the paper's GPU):
  --epochs E --curve-every C   epochs per configuration, test mAP every C epochs
  --train-limit N              a random subset of N training shapes (0 = all)
  --n-points P                 points per shape (1024 as the paper)
  --supervised-epochs S        also the same PointNet trained with the training labels: an upper
                               bound on what the encoder reaches on these points (not a method)
Example: python bench/deepdiffusion.py --datasets modelnet10 --epochs 30 --threads 1
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
from _machine import hardware  # noqa: E402  (bench/ is on sys.path when run as a script)
SHARED = Path(os.environ.get("LATENTMAP_SHARED", ROOT.parent / "shared"))
CACHE = ROOT / ".cache" / "bench_deepdiffusion"

DATASETS = {
    "modelnet10": ("modelnet10/modelnet10.npz", "modelnet10/modelnet10.npz",
                   ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
                    "table", "toilet"]),
    "vesselmnist3d": ("vesselmnist3d/vesselmnist3d.npz", "vesselmnist3d/vesselmnist3d.npz",
                      ["vessel", "aneurysm"]),
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d_64.npz", "adrenalmnist3d/adrenalmnist3d.npz",
                       ["normal", "hyperplasia"]),
}
REFERENCE_SPEED = {"epoch_s": 100.0, "samples_per_s": 13.5, "peak_gb": 1.6,
                   "loss_step_s": {1335: 0.04, 10000: 0.30, 100000: 11.8}}


def _masks(name: str, split: str):
    """(masks, labels) of one official split; ModelNet10's grids are stored as X_/y_ arrays."""
    rel = DATASETS[name][0]
    d = np.load(SHARED / "data" / rel, allow_pickle=False)
    if name == "modelnet10":
        return d[f"X_{split}"] > 0, d[f"y_{split}"].ravel()
    return d[f"{split}_images"] > 0, d[f"{split}_labels"].ravel()


def points_for(name: str, n_points: int):
    """(points, labels, split, kept) for train + test, cached on disk (the sampler is seeded per
    shape). Empty grids (7 train and 1 test grid of ModelNet10) have no surface and are left out;
    ``kept`` is a boolean mask over the split's grids in train-then-test order."""
    from core.preprocess.shapes import mask_to_points

    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"{name}_{n_points}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["x"], z["y"], z["split"], z["kept"]
    xs, ys, sp, kept = [], [], [], []
    for split in ("train", "test"):
        masks, labels = _masks(name, split)
        for i, m in enumerate(masks):
            ok = bool(m.any())
            kept.append(ok)
            if ok:
                xs.append(mask_to_points(m, n_points, seed=i))
                ys.append(int(labels[i]))
                sp.append(split)
    x, y, split, kept = (np.stack(xs).astype(np.float32), np.asarray(ys, dtype=int), np.array(sp),
                         np.asarray(kept))
    np.savez(cache, x=x, y=y, split=split, kept=kept)
    return x, y, split, kept


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


def voxel_pca_features(name: str, kept: np.ndarray, n_components: int = 64) -> np.ndarray:
    """PCA of the voxel grids (28^3 masks for the MedMNIST sets, 30^3 for ModelNet10), fitted on
    the training grids; the test grids that have points (``kept``) are transformed."""
    from sklearn.decomposition import PCA

    _, rel, _ = DATASETS[name]
    d = np.load(SHARED / "data" / rel, allow_pickle=False)
    if name == "modelnet10":
        tr_m, te_m = d["X_train"], d["X_test"]
    else:
        tr_m, te_m = d["train_images"], d["test_images"]
    tr = (tr_m > 0).reshape(len(tr_m), -1).astype(np.float32)
    te = (te_m > 0).reshape(len(te_m), -1).astype(np.float32)[kept[len(tr_m):]]
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


def embedding_health(features):
    from core.metrics.collapse import embedding_health as health

    return health(np.asarray(features, dtype=np.float64))


def retrieval_only(features: np.ndarray, labels: np.ndarray, names) -> dict:
    from core.metrics import retrieval_map

    r = retrieval_map(features, labels, class_names=names, curve=False)
    return {"map": r.map, "map_balanced": r.map_balanced}


def chance_map(labels: np.ndarray, names, n: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    from core.metrics import retrieval_map

    runs = [retrieval_map(rng.normal(size=(len(labels), 16)), labels, class_names=names, curve=False)
            for _ in range(n)]
    return {"map": float(np.mean([r.map for r in runs])), "map_balanced": float(np.mean([r.map_balanced for r in runs]))}


#: the configurations compared: the library default and the public code's settings
EXTRA: dict = {}  # further named configurations (--config NAME=JSON)


def config_params(name: str, args) -> dict:
    """Hyperparameters of a named configuration over the library defaults."""
    from core.methods.deepdiffusion import DeepDiffusion

    if name == "reference":
        ref = {k: v for k, v in DeepDiffusion.REFERENCE.items() if k != "epochs"}  # --epochs sets it
        return {**ref, "batch_size": args.ref_batch_size, "k": args.ref_k, "lam": args.ref_lam}
    params = dict(EXTRA.get(name, {})) if name != "default" else {}
    if name not in EXTRA and name != "default":
        raise SystemExit(f"unknown configuration {name!r}: default, reference or one given by --config")
    if args.batch_size and "batch_size" not in params:
        params["batch_size"] = args.batch_size
    return params


def run_dataset(name: str, args) -> tuple[list[dict], list[dict], list[dict]]:
    """Baselines, then each configuration trained with a learning curve on the test split.
    Returns (final rows, curve rows, speed rows)."""
    from core.dataset import SampleSet
    from core.methods.deepdiffusion import DeepDiffusion

    names = DATASETS[name][2]
    t0 = time.perf_counter()
    x, y, split, kept = points_for(name, args.n_points)
    print(f"[{name}] points {x.shape} ready in {time.perf_counter() - t0:.1f} s "
          f"({int((~kept).sum())} empty grids left out)", flush=True)
    train_idx = np.flatnonzero(split == "train")
    if args.train_limit:  # a random subset (the training split is stored class by class)
        train_idx = np.sort(np.random.default_rng(0).choice(train_idx, args.train_limit, replace=False))
    test_idx = np.flatnonzero(split == "test")
    keep = np.r_[train_idx, test_idx]
    data = SampleSet(ids=np.array([f"{name}/{i}" for i in keep]), x=x[keep], y=y[keep],
                     label_names=names, split=split[keep])
    test = data.by_split("test")
    y_test = y[test_idx]
    rows, curve, speeds = [], [], []

    def add(method, feats, note=""):
        t = time.perf_counter()
        # the inner-ear Table 1 is a two-class summary: the MedMNIST sets only
        m = retrieval_only(feats, y_test, names) if name == "modelnet10" else evaluate(feats, y_test, names)
        rows.append({"dataset": name, "method": method, "note": note, **m})
        print(f"[{name}] {method:<44} mAP {m['map']:.4f}  balanced {m['map_balanced']:.4f}  "
              f"T1 mean ROC-AUC {m.get('t1_mean_roc_auc', float('nan')):.3f}  "
              f"({time.perf_counter() - t:.1f} s eval)", flush=True)
        return m

    if not args.skip_baselines:
        ch = chance_map(y_test, names)
        rows.append({"dataset": name, "method": "chance (random features)", "note": "mean of 5",
                     "map": ch["map"], "map_balanced": ch["map_balanced"]})
        print(f"[{name}] chance                     mAP {ch['map']:.4f}  balanced {ch['map_balanced']:.4f}")
        add("D2 shape distribution", d2_features(test.x), "64 bins, 4096 pairs")
        add("PCA-64 of voxels", voxel_pca_features(name, kept), "64 components, fit on train")
        fresh = DeepDiffusion(seed=0, out_dim=args.out_dim, device=args.device)
        fresh._build()
        add("untrained PointNet (eval, initial BN stats)", fresh._features(test.x).cpu().numpy(),
            "the reference's memory initialisation")
        gen = fresh._batch_features(np.ascontiguousarray(x[train_idx]))
        for _ in gen:
            pass
        add("untrained PointNet (BN stats of one pass)", fresh._features(test.x).cpu().numpy(),
            "the default's memory initialisation")
    if args.supervised_epochs:
        supervised_upper_bound(name, args, x[train_idx], y[train_idx], test.x, y_test, names, curve, add)

    for cfg in filter(None, args.configs.split(",")):  # "" = baselines only
        params = {"epochs": args.epochs, "seed": 0, "device": args.device, "eval_every": 0,
                  "out_dim": args.out_dim, "mixed_precision": args.mixed_precision,
                  **config_params(cfg, args)}
        dd = DeepDiffusion(**params)
        label = f"DeepDiffusion {cfg}"
        t_start = time.perf_counter()
        t_epoch, epoch_times, init_s, eval_s = None, [], None, 0.0
        first_loss = last = None
        for p in dd.steps(data):
            if not p.losses:
                if "initialised" in p.message:
                    init_s = time.perf_counter() - t_start
                    print(f"[{name}] {label}: {p.message} ({init_s:.0f} s)", flush=True)
                    t_epoch = time.perf_counter()
                continue
            first_loss = first_loss or p.losses
            last = p
            if not p.epoch_end:
                continue
            epoch_times.append(time.perf_counter() - t_epoch)
            ep = p.epoch + 1
            print(f"[{name}] {label} epoch {ep}/{args.epochs}: loss {p.losses['loss']:.3f}, "
                  f"{epoch_times[-1]:.1f} s, {p.samples_per_s:.1f} samples/s | {p.message}", flush=True)
            if ep % args.curve_every == 0 or ep == args.epochs:
                t = time.perf_counter()
                train_x = np.ascontiguousarray(data.by_split("train").x)
                if dd.precise_bn and ep != args.epochs:  # as the method does at the end of training
                    for _ in dd._recompute_bn(train_x):
                        pass
                evals = [(cfg, dd.transform(test.x))]
                if args.also_precise_bn and not dd.precise_bn:
                    # the same weights with BatchNorm statistics recomputed over the training
                    # shapes; the training trajectory does not depend on the running statistics
                    for _ in dd._recompute_bn(train_x):
                        pass
                    evals.append((f"{cfg}+precise_bn", dd.transform(test.x)))
                for c_name, feats in evals:
                    r = retrieval_only(feats, y_test, names)
                    cos = float(embedding_health(feats).mean_cosine)
                    curve.append({"dataset": name, "config": c_name, "epoch": ep, "map": r["map"],
                                  "map_balanced": r["map_balanced"], "test_mean_cosine": cos,
                                  "fit_rel_logn": p.metrics["fit_rel_logn"],
                                  "memory_mean_cosine": p.metrics["memory_mean_cosine"],
                                  "memory_effective_rank": p.metrics["memory_effective_rank"],
                                  "train_s": time.perf_counter() - t_start - eval_s})
                    print(f"[{name}] DeepDiffusion {c_name} epoch {ep}: test mAP {r['map']:.4f}, balanced "
                          f"{r['map_balanced']:.4f}, test features' mean cosine {cos:.3f}", flush=True)
                    # results so far, in case the run is stopped before the end
                    write_partial(args, name, c_name, curve)
                eval_s += time.perf_counter() - t
            t_epoch = time.perf_counter()
        n_train = len(train_idx)
        bs = int(dd.batch_size)
        speeds.append({"dataset": name, "config": cfg, "n_train": n_train, "batch": bs,
                       "epochs": args.epochs, "init_s": init_s,
                       "epoch_s": float(np.mean(epoch_times)) if epoch_times else float("nan"),
                       "samples_per_s": (n_train // bs) * bs / float(np.mean(epoch_times)) if epoch_times else float("nan"),
                       "loss_first": first_loss["loss"], "loss_last": last.losses["loss"],
                       "total_s": time.perf_counter() - t_start})
        note = ", ".join(f"{k} {v}" for k, v in config_params(cfg, args).items())
        if args.also_precise_bn and not dd.precise_bn:  # the last curve point recomputed them
            label += " + precise BN"
        add(f"{label} ({args.epochs} ep)", dd.transform(test.x), f"{n_train} train shapes; {note}")
    return rows, curve, speeds


def supervised_upper_bound(name, args, train_x, train_y, test_x, y_test, names, curve, add):
    """The same PointNet trained *with* the training labels (cross-entropy through a linear
    classifier on its features, the method's own augmentation, Adam 1e-3, batch 32), its test
    features ranked like DeepDiffusion's. Not a method: it bounds what this encoder can reach on
    these points, so an unsupervised goal above it is out of reach of the data, not the method."""
    import torch

    from core.methods.deepdiffusion import DeepDiffusion
    from core.preprocess.augment import augment_points_torch

    sup = DeepDiffusion(seed=0, out_dim=args.out_dim, device=args.device, mixed_precision=args.mixed_precision)
    sup._build()
    enc, dev = sup.encoder_, sup.device_
    head = torch.nn.Linear(int(args.out_dim), len(names)).to(dev)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    xt, yt = torch.from_numpy(np.ascontiguousarray(train_x)), torch.from_numpy(train_y).long()
    label = "supervised PointNet (labels; upper bound)"
    for ep in range(1, args.supervised_epochs + 1):
        t, perm, correct = time.perf_counter(), torch.randperm(len(xt), generator=g), 0
        enc.train()
        for i in range(0, len(perm) - 31, 32):  # full batches only (BatchNorm)
            idx = perm[i:i + 32]
            xb = augment_points_torch(xt[idx], generator=g, p=0.8).to(dev)
            logits = head(enc(xb).float())
            loss = torch.nn.functional.cross_entropy(logits, yt[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1).cpu() == yt[idx]).sum())
        print(f"[{name}] {label} epoch {ep}: train acc {correct / (len(perm) // 32 * 32):.3f}, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        if ep % args.curve_every == 0 or ep == args.supervised_epochs:
            r = retrieval_only(sup._features(test_x).cpu().numpy(), y_test, names)
            curve.append({"dataset": name, "config": "supervised", "epoch": ep, "map": r["map"],
                          "map_balanced": r["map_balanced"]})
            print(f"[{name}] {label} epoch {ep}: test mAP {r['map']:.4f}, balanced {r['map_balanced']:.4f}",
                  flush=True)
            write_partial(args, name, "supervised", curve)
    add(f"{label}, {args.supervised_epochs} ep", sup._features(test_x).cpu().numpy(),
        "cross-entropy on the training labels; bounds the unsupervised goal")


def write_partial(args, name, cfg, curve):
    from core.metrics.report import write_table

    rows = [r for r in curve if r["dataset"] == name and r["config"] == cfg]
    write_table(Path(args.out), f"curve_{name}_{cfg}", {f"{cfg} / {r['epoch']}": r for r in rows}, digits=4,
                title=f"{name}, {cfg}: test mAP against epochs, {args.n_points} points ({hardware(args.device)})")


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
    ap.add_argument("--datasets", default="modelnet10,vesselmnist3d,adrenalmnist3d")
    ap.add_argument("--configs", default="default,reference",
                    help="comma-separated: default (the library's defaults), reference (the public "
                         "code's settings), or names given by --config")
    ap.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                    help="an extra named configuration: hyperparameters over the defaults")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--curve-every", type=int, default=5, help="test mAP every that many epochs")
    ap.add_argument("--train-limit", type=int, default=0,
                    help="train on a random subset of N training shapes (0 = all)")
    ap.add_argument("--batch-size", type=int, default=0, help="default config's batch (0: its default)")
    ap.add_argument("--ref-batch-size", type=int, default=16, help="reference config: batch (public code 16)")
    ap.add_argument("--ref-k", type=int, default=20, help="reference config: k (public code 20)")
    ap.add_argument("--ref-lam", type=float, default=1.0, help="reference config: lambda (public code 1.0)")
    ap.add_argument("--out-dim", type=int, default=254)
    ap.add_argument("--n-points", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mixed-precision", default="auto", choices=("auto", "bf16", "off"),
                    help="bf16 runs the encoder in bfloat16 on the CPU too (AMX)")
    ap.add_argument("--loss-sizes", default="", help="LMR loss step timing at these N (e.g. 1335,10000,100000)")
    ap.add_argument("--also-precise-bn", action="store_true",
                    help="also evaluate each curve point with BatchNorm statistics recomputed over the "
                         "training shapes (configurations without precise_bn)")
    ap.add_argument("--supervised-epochs", type=int, default=0,
                    help="also train the PointNet with the training labels for that many epochs: an "
                         "upper bound on what the encoder reaches on these points (0: skip)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 is much faster on an oversubscribed machine")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "deepdiffusion"))
    args = ap.parse_args(argv)

    import torch

    from core.metrics.report import write_table

    if args.threads:
        torch.set_num_threads(args.threads)
    for spec in args.config:
        name, _, js = spec.partition("=")
        EXTRA[name] = json.loads(js)

    cpu = hardware(args.device)  # the CPU model, and the GPU when one is used
    print(f"CPU {cpu}; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}, load {os.getloadavg()[0]:.1f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curve, speeds, files = [], [], [], []
    if args.loss_sizes:
        loss_rows = time_loss([int(s) for s in args.loss_sizes.split(",") if s], k=10)
        files += write_table(out, "loss_step", {f"N={r['N']}": r for r in loss_rows}, digits=4,
                             title=f"LMR loss step (forward + backward), B 32, D 256 ({cpu})")
    if not args.skip_training:
        for name in args.datasets.split(","):
            r, c, s = run_dataset(name, args)
            rows += r
            curve += c
            speeds += s
            # after each data set, so a stopped run keeps what it finished
            files = write_results(out, args, rows, curve, speeds, cpu)
    (out / "args.json").write_text(json.dumps({**vars(args), "cpu": cpu}, indent=1))
    print("written:", ", ".join(str(f) for f in files))
    return 0


def write_results(out, args, rows, curve, speeds, cpu):
    from core.metrics.report import write_table

    files = []
    lim = f", {args.train_limit} training shapes" if args.train_limit else ""
    if rows:
        files += write_table(out, "retrieval", {f"{r['dataset']} / {r['method']}": r for r in rows},
                             title=f"test retrieval and Table 1 (overall), {args.epochs} epoch(s), "
                                   f"{args.n_points} points{lim} ({cpu})")
    if curve:
        files += write_table(out, "curve", {f"{r['dataset']} / {r['config']} / {r['epoch']}": r for r in curve},
                             digits=4, title=f"class-balanced test mAP against epochs, {args.n_points} points"
                                             f"{lim} ({cpu})")
    if speeds:
        files += write_table(out, "speed", {f"{s['dataset']} / {s['config']}": s for s in speeds}, digits=2,
                             title=f"DeepDiffusion training speed ({cpu})")
    return files


if __name__ == "__main__":
    sys.exit(main())
