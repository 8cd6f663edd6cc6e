"""How pure can DeepCluster's 8 x K clusters be on OrganAMNIST? A supervised bound (issue 13).

DeepCluster's network (the default trunk, classifier MLP and preprocessing, built by
``core.methods.deepcluster.DeepCluster``) is trained the way DeepCluster trains it (strong
augmentation, SGD, images drawn uniformly over the targets), but on the true labels of every
training image instead of k-means pseudo-labels. After each scored epoch its test features go
through DeepCluster's own clustering step (precise BatchNorm, l2 + PCA-whitening, k-means with
8 x K clusters) and the benchmark prints the purity at 8 x K, the NMI, K-cluster k-means accuracy
and NMI, and the network's own test accuracy. In the same run, the untrained network and k-means
on raw pixels with 8 x K clusters are the floor.

What it answers: DeepCluster's goal is purity >= 0.90 at 8 x K (DeepMCAT reports > 0.99 on
cardiac MR). If even labels for every image do not make this network's features that pure at
28 px, the goal is out of reach of any pseudo-label the method could find; if they do, the gap
is what unsupervised training leaves.

    OMP_NUM_THREADS=2 .venv/bin/python bench/supervised_bound_2d.py --epochs 8
    .venv/bin/python bench/supervised_bound_2d.py --n-train 2000 --n-test 1000 --epochs 1   # smoke

Prints the CPU model, threads, time per epoch and CPU time; writes results.json and a learning
curve (test purity at 8 x K and test accuracy against epochs) as PNG under ``--out``.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402
from deep_clustering import cpu_seconds, load_medmnist  # noqa: E402  (read-only reuse)

GOAL_PURITY_8K = 0.90


def cluster_scores(features: np.ndarray, y: np.ndarray, k: int, seed: int, pca_dim: int, device) -> dict:
    """DeepCluster's clustering of ``features`` (l2, PCA-whitening, its k-means) at 8 x K and K."""
    from core.methods.deepcluster import fit_preprocessing, kmeans_faiss_style
    from core.metrics.clustering import hungarian_accuracy, nmi, purity

    x, _ = fit_preprocessing(features, pca_dim)
    out = {}
    for name, n in (("8k", 8 * k), ("k", k)):
        assign, _, _ = kmeans_faiss_style(x, n, n_iter=20, seed=seed, device=device)
        out[f"purity_{name}"] = purity(y, assign)
        out[f"nmi_{name}"] = nmi(y, assign)
        if name == "k":
            out["acc_k"] = hungarian_accuracy(y, assign)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "supervised_bound_2d")
    ap.add_argument("--n-train", type=int, default=0, help="training images (0 = all 34,561)")
    ap.add_argument("--n-test", type=int, default=0, help="test images (0 = all 17,778)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--score-epochs", default="1,2,4,8", help="epochs after which the test set is scored")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dc-params", default="{}", help="JSON of DeepCluster hyperparameters (its defaults otherwise)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    args = ap.parse_args(argv)

    data_file = args.data / "organamnist" / "organamnist.npz"
    if not data_file.exists():
        print(f"{data_file}: not found (the shared OrganAMNIST data is needed); nothing run")
        return 1
    import torch
    import torch.nn.functional as F

    from core.device import autocast
    from core.methods.augment2d import strong_augment, to_unit_tensor
    from core.methods.deepcluster import DeepCluster, kmeans_faiss_style, uniform_label_indexes
    from core.methods.pica import _step_generator
    from core.metrics.clustering import nmi, purity

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    data = load_medmnist("organamnist", args.data, args.n_train, 0, args.n_test, args.seed)
    ref = data.y.argmax(1) if data.y.ndim == 2 else np.asarray(data.y)
    train, test = np.flatnonzero(data.split == "train"), np.flatnonzero(data.split == "test")
    k = int(ref.max()) + 1
    m = DeepCluster(seed=args.seed, batch_size=args.batch_size, **json.loads(args.dc_params))
    images = m._images(data.x)
    x0 = to_unit_tensor(images[:1])
    m._build(k, in_channels=x0.shape[1], image_size=max(x0.shape[-2:]))
    print(f"{len(train)} train / {len(test)} test images, {k} classes; DeepCluster's network with "
          f"{json.loads(args.dc_params) or 'its defaults'} ({m.trunk_config_['backbone']}, pool_grid "
          f"{m.trunk_config_.get('pool_grid', 1)}), trained on the true labels; goal purity at 8 x K "
          f">= {GOAL_PURITY_8K}", flush=True)

    def score(epoch: int, t_train: float) -> dict:
        m._recalibrate(images[train])
        f = m._features(images[test])
        row = {"epoch": epoch, "train_s": round(t_train, 1),
               **cluster_scores(f, ref[test], k, args.seed, int(m.pca_dim), m.device_)}
        if epoch > 0:
            model = m.model_.eval()
            with torch.no_grad(), autocast(m.device_, m.mixed_precision):
                pred = np.concatenate([model(m._normalise(to_unit_tensor(images[test[i:i + 512]], m.device_)))
                                       .float().argmax(1).cpu().numpy() for i in range(0, len(test), 512)])
            row["test_acc"] = float((pred == ref[test]).mean())
        print(f"  epoch {epoch}: purity at 8K {row['purity_8k']:.3f} (NMI {row['nmi_8k']:.3f}); "
              f"k-means K: acc {row['acc_k']:.3f} NMI {row['nmi_k']:.3f}"
              + (f"; network's test acc {row['test_acc']:.3f}" if "test_acc" in row else " (untrained)"), flush=True)
        return row

    # the floor, in the same run: k-means on raw pixels with 8 x K clusters
    px = images[test].reshape(len(test), -1).astype(np.float32) / 255.0
    a, _, _ = kmeans_faiss_style(px, 8 * k, n_iter=20, seed=args.seed, device=m.device_)
    floor = {"purity_8k": purity(ref[test], a), "nmi_8k": nmi(ref[test], a)}
    print(f"  k-means on raw pixels, {8 * k} clusters: purity {floor['purity_8k']:.3f} NMI {floor['nmi_8k']:.3f}",
          flush=True)
    curve = [score(0, 0.0)]
    # the classes' own top layer, trained with the body as DeepCluster trains its pseudo-labels'
    m.model_.reset_top_layer(k, generator=torch.Generator().manual_seed(args.seed))
    m._new_top_optimizer()
    scored = {int(e) for e in args.score_epochs.split(",") if e.strip()} | {args.epochs}
    bs = min(args.batch_size, len(train))
    per_class = [list(train[ref[train] == c]) for c in range(k)]
    cpu0, t_train = cpu_seconds(), 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        # drawn uniformly over the classes by DeepCluster's own sampler, as over its pseudo-labels
        order = uniform_label_indexes(len(train), per_class, np.random.RandomState(args.seed * 1000 + epoch))
        m.model_.train()
        for s in range(len(order) // bs):
            idx = order[s * bs:(s + 1) * bs]
            x = strong_augment(to_unit_tensor(images[idx], m.device_), generator=_step_generator(args.seed, epoch, s))
            with autocast(m.device_, m.mixed_precision):
                logits = m.model_(m._normalise(x))
            loss = F.cross_entropy(logits.float(), torch.as_tensor(ref[idx], device=m.device_))
            m.optimizer_.zero_grad(set_to_none=True)
            m.top_optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            m.optimizer_.step()
            m.top_optimizer_.step()
        dt = time.perf_counter() - t0
        t_train += dt
        print(f"  epoch {epoch}/{args.epochs}: {dt:.0f} s, last loss {loss.item():.3f}", flush=True)
        if epoch in scored:
            curve.append(score(epoch, t_train))
    result = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "args": {k_: str(v) for k_, v in vars(args).items()},
              "n_train": int(len(train)), "n_test": int(len(test)), "goal_purity_8k": GOAL_PURITY_8K,
              "kmeans_raw_8k": floor, "curve": curve, "train_s": round(t_train, 1),
              "cpu_s": round(cpu_seconds() - cpu0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ep = [r["epoch"] for r in curve]
        ax.plot(ep, [r["purity_8k"] for r in curve], "o-", label=f"purity at {8 * k} clusters")
        ax.plot(ep[1:], [r["test_acc"] for r in curve[1:]], "s-", label="network's test accuracy")
        ax.axhline(GOAL_PURITY_8K, ls="--", c="k", lw=0.8, label="goal (purity)")
        ax.axhline(floor["purity_8k"], ls=":", c="gray", lw=0.8, label="k-means raw pixels")
        ax.set_xlabel("epochs on the true labels")
        ax.set_ylim(0.5, 1.0)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.out / "curve.png", dpi=110)
    except ImportError:
        print("matplotlib missing: no curve PNG")
    print(f"wrote {args.out}/results.json; training {t_train:.0f} s, CPU {result['cpu_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
