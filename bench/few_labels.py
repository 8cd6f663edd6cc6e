"""Few labels on OrganAMNIST (issue 13, item 4): FixMatch One-Head / Two-Head against supervised
training on the same 10 % of the training labels, from scratch and from a trunk pre-trained
without labels (PICA), all test accuracies in one table next to the goal (>= 0.90) and the
published fully supervised ResNet-18 (0.935); plus Algorithm 1's F1 on a clustering with a 1 %
and a 10 % development set.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/few_labels.py            # the full run
    .venv/bin/python bench/few_labels.py --n-train 3000 --n-test 2000 --steps 60  # a quick proxy

Protocol: the whole official training split (34,561 images) is the unlabelled pool; a seeded,
class-stratified 10 % of it keeps its labels (``core.methods.finetune.stratified_fraction``).
Model selection and the per-class thresholds use a seeded 10 % of the official validation split
(a labelled validation set larger than the labelled training set would not be "few labels");
test accuracy (top-1, argmax of the class scores) is on the whole official test split (17,778).
Every run prints its time per epoch, its process CPU time and the load average; the learning
curve (test accuracy after each epoch, of the evaluated weights: the EMA where there is one) is
printed and written as PNG. Results go to ``bench/results/few_labels/``.
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
from core.device import default_precision  # noqa: E402
from deep_clustering import ORGANAMNIST_NAMES, cluster_report, cpu_seconds, load_medmnist  # noqa: E402  (read-only reuse)

GOAL_ACC = 0.90
#: MedMNIST v2 (Yang et al. 2023), Table: OrganAMNIST, ResNet-18 (28), 100 % of the labels
RESNET18_FULL_LABELS_ACC = 0.935


def load_organamnist(data_dir: Path, n_train: int, val_fraction: float, n_test: int, seed: int):
    """Official splits (seeded subsets where n_* > 0; the validation split cut to val_fraction):
    ``deep_clustering.load_medmnist``'s sets, so both benchmarks score the same images."""
    path = data_dir / "organamnist" / "organamnist.npz"
    if not path.exists():
        raise SystemExit(f"{path}: not found (OrganAMNIST npz of MedMNIST v2 expected)")
    with np.load(path, allow_pickle=False) as d:
        n_val = max(1, int(round(val_fraction * len(d["val_labels"]))))
    return load_medmnist("organamnist", data_dir, n_train, n_val, n_test, seed)


def train_with_curve(label: str, method, data, test_x, test_y) -> dict:
    """Run ``method.steps`` to the end; after each epoch the evaluated weights' accuracy on
    ``test_x`` (a fixed seeded subset of the test split, to keep the curve cheap)."""
    from core.metrics.classification import single_label_accuracy

    t0, c0 = time.perf_counter(), cpu_seconds()
    curve, eval_cpu = [], 0.0
    last = None
    for p in method.steps(data):
        last = p
        if p.epoch_end:
            ce = cpu_seconds()
            _, outs = method._outputs(test_x)
            acc = single_label_accuracy(test_y, method._scores(outs).numpy())
            eval_cpu += cpu_seconds() - ce
            curve.append({"epoch": p.epoch + 1, "test_acc": acc, "cpu_s": cpu_seconds() - c0 - eval_cpu,
                          "wall_s": time.perf_counter() - t0, **{k: float(v) for k, v in p.losses.items()},
                          **{k: float(v) for k, v in p.metrics.items()}})
            extra = "  ".join(f"{k} {float(v):.3f}" for k, v in p.losses.items())
            print(f"    [{label}] epoch {p.epoch + 1}/{p.n_epochs}: test acc {acc:.4f}  "
                  f"val F1 {p.metrics.get('val_f1', float('nan')):.3f}  "
                  f"val BCE {p.metrics.get('val_bce', float('nan')):.4f}  {extra}  "
                  f"({p.metrics.get('epoch_s', 0):.0f} s wall, load {os.getloadavg()[0]:.1f})", flush=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"curve": curve, "wall_s": wall, "cpu_s": cpu, "train_cpu_s": cpu - eval_cpu,
            "epochs": len(curve), "steps": last.global_step if last else 0, "curve_n": len(test_y)}


SELECTION_RULE = {"f1": "val F1", "loss": "val BCE"}  # --monitor -> how the tables name it
OTHER_RULE = {"f1": "loss", "loss": "f1"}


def kept_by_other_rule(curve: list, monitor: str) -> dict:
    """The epoch the selection rule *not* in use would have kept, and its curve accuracy, so the
    two rules are compared in every run. The validation subset's weighted F1 (649 images by
    default) saturates at 0.99 while the test accuracy still rises, so choosing on F1 picks among
    near-ties; the validation BCE still orders the epochs. Ties keep the first epoch, as the
    trainer does."""
    other = OTHER_RULE[monitor]
    key, sign = ("val_f1", -1.0) if other == "f1" else ("val_bce", 1.0)
    scored = [c for c in curve if key in c]
    if not scored:
        return {}
    c = min(scored, key=lambda c: sign * c[key])
    return {"other_rule": other, "other_rule_epoch": int(c["epoch"]), "other_rule_test_acc": c["test_acc"]}


def evaluate(label: str, method, info: dict, test_x, test_y, rows: list, init: str) -> dict:
    from core.metrics.classification import single_label_accuracy

    _, outs = method._outputs(test_x)  # best-validation weights (EMA ones where used)
    acc = single_label_accuracy(test_y, method._scores(outs).numpy())
    n_ep = max(1, info["epochs"])
    row = {"method": label, "init": init, "test_acc": acc, "final_epoch_test_acc": info["curve"][-1]["test_acc"],
           # the last epoch's and the other rule's figures are the curve's: on its test subset,
           # not the whole split, unless --curve-test 0
           "curve_test_images": info["curve_n"],
           **kept_by_other_rule(info["curve"], method.monitor),
           "best_epoch": int(method.best_epoch_) + 1, "labelled": int(len(method.labelled_idx_)),
           "epochs": info["epochs"], "steps": info["steps"], "s_per_epoch": info["wall_s"] / n_ep,
           "cpu_s_per_epoch": info["train_cpu_s"] / n_ep, "wall_s": info["wall_s"], "cpu_s": info["cpu_s"],
           "curve": info["curve"], "params": {k: v for k, v in method.get_params().items()
                                              if isinstance(v, (int, float, str, bool))}}
    rows.append(row)
    other = (f"{SELECTION_RULE[row['other_rule']]} would keep epoch {row['other_rule_epoch']}: "
             f"{row['other_rule_test_acc']:.4f}, " if "other_rule" in row else "")
    print(f"  {label:<34} test acc {acc:.4f} (best val epoch {row['best_epoch']}; on {row['curve_test_images']} "
          f"test images: {other}last epoch {row['final_epoch_test_acc']:.4f}); {row['epochs']} epochs, "
          f"{row['s_per_epoch']:.0f} s/epoch wall, "
          f"{row['cpu_s_per_epoch']:.0f} CPU s/epoch, CPU {row['cpu_s']:.0f} s, load {os.getloadavg()[0]:.1f}",
          flush=True)
    return row


def plot(rows: list, out: Path, tag: str = "") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        ep = [c["epoch"] for c in r["curve"]]
        acc = [c["test_acc"] for c in r["curve"]]
        cpu = [c["cpu_s"] / 60 for c in r["curve"]]
        name = r["method"] + ("" if r["init"] == "scratch" else " (PICA trunk)")
        ls = "-" if r["init"] == "scratch" else "--"
        axes[0].plot(ep, acc, marker="o", ls=ls, label=name)
        axes[1].plot(cpu, acc, marker="o", ls=ls, label=name)
    n_curve = {r.get("curve_test_images") for r in rows}  # absent from older results files
    n_curve = n_curve.pop() if len(n_curve) == 1 else None
    for ax, xl in zip(axes, ("epoch", "training CPU minutes (one thread)")):
        ax.axhline(GOAL_ACC, color="k", ls="--", lw=0.8)
        ax.axhline(RESNET18_FULL_LABELS_ACC, color="gray", ls=":", lw=0.8)
        ax.set_xlabel(xl)
        ax.set_ylabel("test accuracy" + (f" ({n_curve:,} test images)" if n_curve else ""))
    axes[0].text(1, GOAL_ACC + 0.003, "goal 0.90", fontsize=7)
    axes[0].text(1, RESNET18_FULL_LABELS_ACC + 0.003, "ResNet-18, 100 % labels (published)", fontsize=7)
    if rows:  # the first write comes before any run has finished
        axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("OrganAMNIST, 10 % of the training labels: test accuracy per epoch", fontsize=10)
    fig.tight_layout()
    path = out / f"learning_curves{tag}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report(rows: list, clus: list, args) -> None:
    """Print the tables and (re)write the JSON and the PNG (after every run: partial results survive)."""
    rule, other = SELECTION_RULE[args.monitor], SELECTION_RULE[OTHER_RULE[args.monitor]]
    print(f"\n| method | trunk init | test acc ({rule} chosen) | {other} chosen | last epoch | curve images | "
          "goal | ResNet-18 100 % labels | epochs | s/epoch (wall) | CPU s/epoch | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        at_other = f"{r['other_rule_test_acc']:.4f}" if "other_rule_test_acc" in r else "-"
        print(f"| {r['method']} | {r['init']} | {r['test_acc']:.4f} | {at_other} | {r['final_epoch_test_acc']:.4f} | "
              f"{r['curve_test_images']} | >= {GOAL_ACC} | {RESNET18_FULL_LABELS_ACC} | "
              f"{r['epochs']} | {r['s_per_epoch']:.0f} | {r['cpu_s_per_epoch']:.0f} | {r['cpu_s']:.0f} |")
    print("\n| clustering | Hungarian acc | NMI | F1 Alg. 1, 1 % dev | F1 Alg. 1, 10 % dev |")
    print("|---|---|---|---|---|")
    for r in clus:
        if r.get("collapsed"):
            print(f"| {r['method']} | COLLAPSED ({r['clusters_used']} of {r['clusters_asked']}) | | | |")
        else:
            print(f"| {r['method']} | {r['acc']:.3f} | {r['nmi']:.3f} | {r['f1_dev1']:.3f} | {r['f1_dev10']:.3f} |")
    png = plot(rows, args.out, args.tag)
    print(f'curves: {png}', flush=True)
    out = {"cpu": cpu_model(), "args": {k: str(v) for k, v in vars(args).items()},
           "goal_acc": GOAL_ACC, "resnet18_full_labels_acc": RESNET18_FULL_LABELS_ACC,
           "classification": rows, "algorithm1": clus, "loadavg_end": os.getloadavg(),
           "total_cpu_s": cpu_seconds()}
    (args.out / f"results{args.tag}.json").write_text(json.dumps(out, indent=1, default=float))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "few_labels")
    ap.add_argument("--n-train", type=int, default=0, help="training images (0 = all 34,561)")
    ap.add_argument("--n-test", type=int, default=0, help="test images (0 = all 17,778)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="of the official validation split")
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="convnet_small")
    ap.add_argument("--mixed-precision", default=default_precision(), choices=("auto", "bf16", "off"),
                    help="default: bf16 where the CPU has bf16 instructions (AMX, AVX-512 BF16), else auto")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of every classifier run")
    ap.add_argument("--steps", type=int, default=40, help="FixMatch steps per epoch")
    ap.add_argument("--batch-size", type=int, default=32, help="labelled images per step")
    ap.add_argument("--mu", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--weak-forward", default="joint")
    ap.add_argument("--monitor", default="loss", choices=("f1", "loss"),
                    help="validation figure that chooses the kept weights: BCE (FixMatch's default) or weighted F1")
    ap.add_argument("--sup-epochs", type=int, default=6,
                    help="supervised epochs over the labelled images (0: the FixMatch runs' labelled images seen)")
    ap.add_argument("--pica-epochs", type=int, default=1, help="PICA pre-training epochs (0: skip part d)")
    ap.add_argument("--only", default="", help="comma list of: sup, fm1, fm2, pica, ft, fm1-pica, fm2-pica")
    ap.add_argument("--tag", default="", help="suffix of the results files")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from results<tag>.json")
    ap.add_argument("--curve-test", type=int, default=2000, help="test images of the per-epoch curve (0 = the whole test split)")
    ap.add_argument("--pica-repeat", type=int, default=1, help="PICA strong copies per image")
    ap.add_argument("--pica-n-train", type=int, default=8000, help="training images PICA sees (0 = all)")
    ap.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/few_labels_ckpt"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from core.methods.finetune import ClusterFinetune
    from core.methods.fixmatch import FixMatch

    if args.replot:
        res = json.loads((args.out / f"results{args.tag}.json").read_text())
        print(plot(res["classification"], args.out, args.tag))
        return
    only = set(filter(None, args.only.split(",")))
    want = lambda k: not only or k in only  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch {torch.__version__}", flush=True)
    data = load_organamnist(args.data, args.n_train, args.val_fraction, args.n_test, args.seed)
    n = {s: int((data.split == s).sum()) for s in ("train", "val", "test")}
    te = np.flatnonzero(data.split == "test")
    from core.methods.augment2d import to_unit_tensor

    test_x, test_y = to_unit_tensor(data.x[te]), data.y[te]
    sub = np.sort(np.random.default_rng(args.seed).permutation(len(te))[:args.curve_test or len(te)])
    curve_x, curve_y = test_x[sub], test_y[sub]
    n_lab = int(round(args.label_fraction * n["train"]))
    print(f"OrganAMNIST: {n['train']} train (unlabelled pool), ~{n_lab} labelled ({args.label_fraction:.0%}, "
          f"class-stratified, seed {args.seed}), {n['val']} val ({args.val_fraction:.0%} of the official "
          f"split: model selection), {n['test']} test; goal test acc >= {GOAL_ACC}; fully supervised "
          f"ResNet-18 (28), 100 % labels, published: {RESNET18_FULL_LABELS_ACC}", flush=True)
    spe_sup = max(1, n_lab // args.batch_size)
    matched_epochs = max(1, round(args.epochs * args.steps / spe_sup))  # FixMatch's labelled images seen
    sup_epochs = args.sup_epochs or matched_epochs
    sup_seen = ("same labelled images seen as FixMatch" if sup_epochs == matched_epochs
                else f"FixMatch's labelled images seen would take {matched_epochs}")
    common = dict(label_fraction=args.label_fraction, seed=args.seed, device="cpu", batch_size=args.batch_size,
                  mixed_precision=args.mixed_precision, lr=args.lr, weight_decay=5e-4, ema_decay=args.ema,
                  monitor=args.monitor)
    fm = dict(epochs=args.epochs, steps_per_epoch=args.steps, mu=args.mu, weak_forward=args.weak_forward,
              **common)
    sup = dict(epochs=sup_epochs, patience=0, optimizer="sgd", schedule="cosine", **common)
    print(f"settings: trunk {args.backbone}, bf16 {args.mixed_precision}; FixMatch {args.epochs} x {args.steps} "
          f"steps, B {args.batch_size}, mu {args.mu}, tau 0.95, lambda_u 1, SGD-Nesterov lr {args.lr} "
          f"cosine, wd 5e-4, EMA {args.ema}, weak view forward '{args.weak_forward}', weights chosen on "
          f"{SELECTION_RULE[args.monitor]}; supervised: "
          f"{sup_epochs} epochs of {spe_sup} steps ({sup_seen}), same optimiser",
          flush=True)
    rows, clus = [], []
    # Algorithm 1 on a k-means clustering of PCA-50 pixel features, K = 11 and 8 K = 88
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = data.x.reshape(len(data.x), -1).astype(np.float32) / 255.0
    tr = data.split == "train"
    z = PCA(50, random_state=args.seed).fit(x[tr]).transform(x)
    for k in (11, 88):
        km = KMeans(k, n_init=3, random_state=args.seed).fit(z[tr])
        cluster_report(f"k-means PCA-50 (K={k})", data, km.predict(z), k, args.seed, clus)
    report(rows, clus, args)
    runs = [("sup", "supervised (labelled 10 % only)", lambda: ClusterFinetune(backbone=args.backbone, **sup)),
            ("fm1", "FixMatch One-Head", lambda: FixMatch(variant="one-head", backbone=args.backbone, **fm)),
            ("fm2", "FixMatch Two-Head", lambda: FixMatch(variant="two-head", backbone=args.backbone, **fm))]
    for key, label, make in runs:
        if want(key):
            m = make()
            evaluate(label, m, train_with_curve(label, m, data, curve_x, curve_y), test_x, test_y, rows, "scratch")
            report(rows, clus, args)

    if args.pica_epochs and (want("pica") or want("ft") or want("fm1-pica") or want("fm2-pica")):
        from core.jobs import Job
        from core.methods.pica import PICA

        tr_idx = np.flatnonzero(data.split == "train")
        if args.pica_n_train and args.pica_n_train < len(tr_idx):
            tr_idx = np.sort(np.random.default_rng(args.seed).permutation(tr_idx)[:args.pica_n_train])
        train = data.subset(tr_idx)
        pica = PICA(backbone=args.backbone, epochs=args.pica_epochs, n_clusters=len(ORGANAMNIST_NAMES),
                    n_repeat=args.pica_repeat, eval_samples=2000, mixed_precision=args.mixed_precision,
                    seed=args.seed, device="cpu")
        args.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt = args.ckpt_dir / f"pica{args.tag}.pt"
        t, c = time.perf_counter(), cpu_seconds()
        Job(pica, train, checkpoint_path=ckpt).run()
        pw, pc = time.perf_counter() - t, cpu_seconds() - c
        print(f"  PICA pre-training (no labels, {len(tr_idx)} training images): {args.pica_epochs} epoch(s), {pw / args.pica_epochs:.0f} s/epoch "
              f"wall, CPU {pc:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        assign = np.asarray(pica.predict_clusters(data), dtype=int)
        cluster_report("PICA clusters (K=11)", data, assign, len(ORGANAMNIST_NAMES), args.seed, clus)
        clus[-1].update({"epochs": args.pica_epochs, "wall_s": pw, "cpu_s": pc})
        init = str(ckpt)
        runs = [("ft", "fine-tune (supervised)", lambda: ClusterFinetune(init_checkpoint=init, **sup)),
                ("fm2-pica", "FixMatch Two-Head", lambda: FixMatch(variant="two-head", init_checkpoint=init, **fm)),
                ("fm1-pica", "FixMatch One-Head", lambda: FixMatch(variant="one-head", init_checkpoint=init, **fm))]
        for key, label, make in runs:
            if want(key):
                m = make()
                evaluate(label, m, train_with_curve(label, m, data, curve_x, curve_y), test_x, test_y, rows,
                         f"PICA trunk ({args.pica_epochs} epoch(s), no labels)")
                report(rows, clus, args)

    report(rows, clus, args)
    print(f"\ntotal process CPU {cpu_seconds():.0f} s; load {os.getloadavg()[0]:.1f}; results: {args.out}", flush=True)


if __name__ == "__main__":
    main()
