"""Benchmark: residual self-supervision vs SSL baselines vs supervised, AUPRC/AUROC against label fraction.

Reproduces the protocol of Bhattacharya et al. (Figure 3) on VesselMNIST3D (vessel = normal,
aneurysm = anomaly; official splits) or AdrenalMNIST3D: every method pretrains the same 3D
ResUNet-18 encoder on the training volumes (labels unused), then ``AnomalyFinetune`` trains it on a
stratified 10/20/50/100 % of the training labels (threshold from validation), and AUPRC/AUROC are
measured on the test split, for several seeds. Prints what was used, a table, epochs and time per
epoch, and writes results.csv, results.md and figure3.png to --out.

Reduced settings are flags (the full protocol is far beyond a 2-core CPU):
  --train-pool N   stratified subset of the training split used for pretraining and fine-tuning
  --eval-pool N    stratified subsets of N val and N test volumes (evaluation cost)
  --widen W        ResUNet width multiplier (1.0 = the paper's ResUNet-18)
Example (the quick CPU run reported in the issue):
  python bench/residual_ssl.py --seeds 0 --fractions 0.1,1.0 --train-pool 240 --widen 0.125 \
      --ae-epochs 2 --pretrain-epochs 2 --ft-epochs 4
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
SHARED = Path(os.environ.get("LATENTMAP_SHARED", ROOT.parent / "shared"))

DATASETS = {
    "vesselmnist3d": ("vesselmnist3d/vesselmnist3d.npz", ["vessel", "aneurysm"]),
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d.npz", ["normal", "hyperplasia"]),
    "adrenalmnist3d_64": ("adrenalmnist3d/adrenalmnist3d_64.npz", ["normal", "hyperplasia"]),
}
SSL_METHODS = ["residual-ssl", "simclr", "byol-ref", "byol", "simsiam", "masked"]
ALL_METHODS = SSL_METHODS + ["supervised"]


def load(name: str, train_pool: int, seed: int, eval_pool: int = 0):
    from core.dataset import SampleSet
    from core.label_fraction import stratified_fraction

    rel, names = DATASETS[name]
    path = SHARED / "data" / rel
    if not path.exists():
        raise SystemExit(f"{path}: data set not found (set LATENTMAP_SHARED)")
    d = np.load(path)
    xs, ys, sp = [], [], []
    for s in ("train", "val", "test"):
        xs.append(d[f"{s}_images"])
        ys.append(d[f"{s}_labels"].ravel().astype(int))
        sp += [s] * len(ys[-1])
    x, y, split = np.concatenate(xs), np.concatenate(ys), np.array(sp)
    keep = np.ones(len(y), dtype=bool)
    if train_pool:
        tr = np.flatnonzero(split == "train")
        sub = tr[stratified_fraction(y[tr], min(1.0, train_pool / len(tr)), seed=10_000 + seed)]
        keep[tr] = False
        keep[sub] = True
    if eval_pool:  # stratified subsets of val and test (fixed across seeds: same yardstick for all runs)
        for s in ("val", "test"):
            idx = np.flatnonzero(split == s)
            sub = idx[stratified_fraction(y[idx], min(1.0, eval_pool / len(idx)), seed=20_000)]
            keep[idx] = False
            keep[sub] = True
    ids = np.array([f"{name}-{s}-{i}" for i, s in enumerate(split)])
    return SampleSet(ids=ids[keep], x=x[keep], y=y[keep], label_names=names, split=split[keep])


def pretrain(method: str, data, args, seed: int):
    from core.methods.residual_ssl import ResidualSSL
    from core.methods.ssl_baselines import BYOL, MaskedVolume, SimCLR, SimSiam

    common = dict(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.lr, widen_factor=args.widen,
                  seed=seed, device=args.device)
    m = {"residual-ssl": lambda: ResidualSSL(ae_epochs=args.ae_epochs, **common),
         "simclr": lambda: SimCLR(**common),
         "byol-ref": lambda: BYOL(momentum=False, predictor=False, **common),
         "byol": lambda: BYOL(**common),
         "simsiam": lambda: SimSiam(**common),
         "masked": lambda: MaskedVolume(**common)}[method]()
    t0 = time.perf_counter()
    last = None
    # Pretraining sees the training volumes only (residual-ssl's AE: the normal ones among them).
    for p in m.steps(data.by_split("train")):
        last = p
    dt = time.perf_counter() - t0
    n_ep = args.pretrain_epochs + (args.ae_epochs if method == "residual-ssl" else 0)
    return m.state_dict(), dt, n_ep, (last.losses if last else {})


def finetune(state, data, frac: float, args, seed: int):
    from core.methods.residual_ssl import AnomalyFinetune

    ft = AnomalyFinetune(init_checkpoint=state if state is not None else "", label_fraction=frac,
                         fraction_seed=seed, epochs=args.ft_epochs, patience=args.patience,
                         batch_size=args.batch_size, lr=args.ft_lr, widen_factor=args.widen, seed=seed,
                         device=args.device)
    t0 = time.perf_counter()
    for _ in ft.steps(data):
        pass
    return ft.metrics_, time.perf_counter() - t0


def plot(df, out: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, lab in ((axes[0], "test_auprc", "AUPRC"), (axes[1], "test_auroc", "AUROC")):
        for method, g in df.groupby("method", sort=False):
            s = g.groupby("fraction")[key].agg(["mean", "std"]).reset_index()
            ax.errorbar(100 * s["fraction"], s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3,
                        label=method, lw=2.2 if method == "residual-ssl" else 1.2)
        ax.set_xlabel("training labels used (%)")
        ax.set_ylabel(f"test {lab}")
        ax.set_xticks(sorted(100 * df["fraction"].unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="vesselmnist3d", choices=sorted(DATASETS))
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--fractions", default="0.1,0.2,0.5,1.0")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-pool", type=int, default=0, help="stratified subset of the train split (0 = all)")
    ap.add_argument("--eval-pool", type=int, default=0,
                    help="stratified subset of val and of test, each (0 = all; full test is the honest figure)")
    ap.add_argument("--widen", type=float, default=1.0)
    ap.add_argument("--ae-epochs", type=int, default=20)
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--ft-epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ft-lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is much faster than 2 on a shared, busy 2-core machine")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "residual_ssl"))
    ap.add_argument("--from-csv", action="store_true",
                    help="only re-render table and plot from --out/results.csv (+ timing.csv) of an earlier run")
    args = ap.parse_args(argv)
    if args.from_csv:
        import pandas as pd

        out = Path(args.out)
        df = pd.read_csv(out / "results.csv")
        tp = out / "timing.csv"
        tdf = pd.read_csv(tp) if tp.exists() else pd.DataFrame(
            columns=["seed", "method", "stage", "epochs", "seconds", "s_per_epoch"])
        summarize(df, tdf, args, out, sorted(df["fraction"].unique()), "as recorded")
        return

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from core.device import pick_device

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = set(methods) - set(ALL_METHODS)
    if bad:
        raise SystemExit(f"unknown methods {sorted(bad)}; known: {ALL_METHODS}")
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    print("settings:", json.dumps({**vars(args), "device_used": str(device), "torch": torch.__version__}))

    rows, timing = [], []
    t_all = time.perf_counter()
    for seed in seeds:
        data = load(args.dataset, args.train_pool, seed, args.eval_pool)
        n_tr = int((data.split == "train").sum())
        n_an = int(((data.split == "train") & (data.y[:, 1] > 0)).sum())
        print(f"seed {seed}: {n_tr} training volumes ({n_an} anomalous), "
              f"{int((data.split == 'val').sum())} val, {int((data.split == 'test').sum())} test", flush=True)
        for method in methods:
            state, dt, n_ep = None, 0.0, 0
            if method != "supervised":
                state, dt, n_ep, losses = pretrain(method, data, args, seed)
                timing.append({"seed": seed, "method": method, "stage": "pretrain", "epochs": n_ep,
                               "seconds": dt, "s_per_epoch": dt / max(1, n_ep)})
                print(f"  {method}: pretrained {n_ep} epochs in {dt:.0f}s; last losses "
                      f"{ {k: round(v, 4) for k, v in losses.items()} }", flush=True)
            for frac in fractions:
                met, ft_dt = finetune(state, data, frac, args, seed)
                ep = int(met["epochs_run"])
                timing.append({"seed": seed, "method": method, "stage": f"finetune {frac:g}", "epochs": ep,
                               "seconds": ft_dt, "s_per_epoch": ft_dt / max(1, ep)})
                rows.append({"seed": seed, "method": method, "fraction": frac, **met, "ft_seconds": ft_dt,
                             "pretrain_seconds": dt, "pretrain_epochs": n_ep})
                print(f"    {frac:>4.0%} labels (n={met['n_train']}): AUPRC {met.get('test_auprc', float('nan')):.3f} "
                      f"AUROC {met.get('test_auroc', float('nan')):.3f} F1 {met.get('test_f1', float('nan')):.3f} "
                      f"({ep} epochs, best {met['best_epoch']}, {ft_dt:.0f}s)", flush=True)
                pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
                pd.DataFrame(timing).to_csv(out / "timing.csv", index=False)
    summarize(pd.DataFrame(rows), pd.DataFrame(timing), args, out, fractions, device)
    print(f"total {time.perf_counter() - t_all:.0f}s")


def summarize(df, tdf, args, out: Path, fractions, device) -> None:
    """Table, timing, the paper's claim at the smallest fraction, and the Figure-3-like plot."""
    if "test_auprc" not in df:
        raise SystemExit("no finished fine-tuning runs to summarise")
    fractions = sorted(set(fractions) & set(df["fraction"]))
    table = df.groupby(["method", "fraction"], sort=False)[["test_auprc", "test_auroc", "test_f1"]].agg(
        ["mean", "std"]).round(3)
    low = df[df["fraction"] == min(fractions)]
    base = low.groupby("method")["test_auprc"].mean()
    lines = ["# residual-ssl benchmark", "", "settings: `" + json.dumps(vars(args)) + f"`, device {device}", "",
             "```\n" + table.to_string() + "\n```", "",
             "time per epoch (s, mean over runs):", "",
             tdf.assign(stage=tdf["stage"].str.split().str[0]).groupby(["method", "stage"])["s_per_epoch"]
             .mean().round(1).to_string(), ""]
    if "residual-ssl" in base:
        claims = []
        for m in SSL_METHODS[1:]:
            if m in base:
                per_seed = low.pivot_table(index="seed", columns="method", values="test_auprc")
                wins = int((per_seed["residual-ssl"] > per_seed[m]).sum())
                claims.append(f"{m}: residual {base['residual-ssl']:.3f} vs {base[m]:.3f} -> "
                              f"{'beats' if base['residual-ssl'] > base[m] else 'does NOT beat'} "
                              f"(higher in {wins}/{len(per_seed)} seeds)")
        lines += [f"claim at {min(fractions):.0%} labels (paper: residual 0.79 > SSL baselines 0.73-0.75 AUPRC):", ""]
        lines += [f"- {c}" for c in claims]
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    print(text)
    plot(df, out / "figure3.png", f"{args.dataset}, seeds {sorted(df['seed'].unique().tolist())}, "
         f"pool {args.train_pool or 'all'}, widen {args.widen}, "
         f"epochs ae/pre/ft {args.ae_epochs}/{args.pretrain_epochs}/{args.ft_epochs}")
    print(f"wrote {out}/results.csv, results.md, timing.csv, figure3.png")


if __name__ == "__main__":
    main()
