"""Deep clustering benchmark on OrganAMNIST (official splits) and BreastMNIST (issue 13).

Clustering, all in one run and scored on the same test images: k-means on raw pixels and on
PCA-50, PICA (entropy prior), PICA with the symmetric Dirichlet prior (ultrasound paper's L_SD),
DeepCluster (its 8 x K over-clustering, and K-cluster k-means on its features), and when
DeepCluster runs, the same 8 x K clusters without its training: k-means on raw pixels and
DeepCluster's first k-means on its untrained network (purity rises with the number of clusters,
so 8 x K purity is only comparable at 8 x K). For each:
Hungarian accuracy, NMI and purity on the test split, the number of clusters used (a method that
uses fewer than asked is reported as COLLAPSED, without scores) and the weighted F1 after
Algorithm 1 with 1 % and 10 % of the training labels as development set (cluster -> mean dev
label vector; per-class thresholds tuned on the validation split; test F1).

Apart from how each method partitions its features, how much of the classes the features hold
(``--feature-probe``, on by default): test accuracy of a logistic-regression probe and of a
20-nearest-neighbour vote, fitted on 10 % of the training labels, for raw pixels, PCA-50, each
method's untrained network and the trained one. K-cluster k-means on each method's features is
scored too, and its over-clusters (PICA's 7 x K head, DeepCluster's 8 x K) merged into K by
average linkage of their centroids (``core.cluster.merge``; PICA's weighted by its head's
probabilities).

Few labels (fine-tuning, FixMatch One-Head and Two-Head, supervised from scratch; issue 13
item 4) are ``bench/few_labels.py``.

Printed: CPU model, threads, load average, every setting, progress from the first second
(loading, network built, every ~20 s a step line, every epoch end, features for k-means), per
method time per epoch, epochs, steps, wall and CPU time, peak RSS, and (``--probe-size``) the
peak RSS of one default PICA step (batch 256) at 128 x 128 in a separate process. Every
``--eval-every`` steps PICA's clusters of a fixed test subset are scored, for the learning
curves. Writes results.json and per-dataset learning-curve PNGs (test-subset accuracy and NMI
during training; per epoch the training-subset NMI, used clusters, PUI and prior terms) under
``--out``.

Defaults: the full official splits (OrganAMNIST 34,561 train / 6,491 val / 17,778 test) and the
methods' CPU-budget defaults (small ConvNet trunk, PICA's heads trained jointly, Adam lr 1e-3,
one strong copy, bf16); the epoch counts are flags, sized for about an hour of one core.
Every method and baseline is fitted on the training images, or with ``--transductive`` on the
training and test images without their labels (PICA's own protocol on CIFAR; a user clusters the
whole cohort), and scored on the test images either way.

``--resume-dir DIR`` continues each method from its checkpoint in an earlier run's ``--out``
(same settings; more epochs train on, the same number only scores again).

    .venv/bin/python bench/deep_clustering.py                       # full data
    .venv/bin/python bench/deep_clustering.py --n-train 800 --n-test 1000 --epochs 1   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.device import default_precision  # noqa: E402

GOALS = {"organamnist": {"acc": 0.70, "nmi": 0.65, "purity_8k": 0.90, "over_kmeans_raw": 0.15}}
ORGANAMNIST_NAMES = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
                     "liver", "lung-left", "lung-right", "pancreas", "spleen"]
BREASTMNIST_NAMES = ["malignant", "normal-benign"]


def load_medmnist(name: str, data_dir: Path, n_train: int, n_val: int, n_test: int, seed: int):
    from core.dataset import SampleSet

    path = data_dir / name / f"{name}.npz"
    if not path.exists():
        raise SystemExit(f"{path}: not found")
    d = np.load(path)
    rng = np.random.default_rng(seed)
    parts = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        x, y = d[f"{split}_images"], d[f"{split}_labels"].reshape(-1).astype(int)
        idx = np.sort(rng.permutation(len(x))[:n]) if n and n < len(x) else np.arange(len(x))
        parts.append((x[idx], y[idx], np.array([split] * len(idx)), idx))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    split = np.concatenate([p[2] for p in parts])
    ids = np.array([f"{name}-{s}-{i}" for p in parts for s, i in zip(p[2], p[3])])
    names = ORGANAMNIST_NAMES if name == "organamnist" else BREASTMNIST_NAMES
    return SampleSet(ids=ids, x=x, y=y, label_names=names, split=split)


def algorithm1(assign, dev_y, n_clusters):
    """Cluster -> mean development label vector (and counts), from core.cluster.match."""
    try:
        from core.cluster.match import match_clusters
    except ImportError:  # Algorithm 1 lands with the clustering helper's core/cluster/match.py
        match_clusters = _algorithm1_local
    out = match_clusters(assign, dev_y, n_clusters)
    vectors, counts = (out[0], out[1]) if isinstance(out, tuple) else (out.vectors, out.counts)
    return np.asarray(vectors, dtype=float), np.asarray(counts)


def _algorithm1_local(assign, dev_y, n_clusters):
    # The paper's Algorithm 1 verbatim: v_k = mean of the dev label vectors assigned to k;
    # clusters without a dev sample are unmatched (NaN rows), not zero.
    vectors = np.full((n_clusters, dev_y.shape[1]), np.nan)
    counts = np.bincount(assign, minlength=n_clusters)[:n_clusters]
    for c in np.flatnonzero(counts):
        vectors[c] = dev_y[assign == c].mean(0)
    return vectors, counts


def cluster_report(name, data, assign, k, seed, rows, k_asked=None, fit_on=("train",)):
    """Hungarian acc / NMI / purity on test, and Algorithm-1 F1 with 1 % and 10 % dev sets.
    ``k_asked``: the clusters the method was asked for; fewer used on the images it was fitted on
    (the splits ``fit_on``) is reported as COLLAPSED without any score."""
    from core.metrics.classification import apply_thresholds, best_f1_thresholds, per_class_scores
    from core.metrics.clustering import hungarian_accuracy, nmi, purity
    from core.methods.finetune import stratified_fraction

    y = data.class_index
    te, va, tr = (data.split == s for s in ("test", "val", "train"))
    used = int(len(np.unique(assign[np.isin(data.split, fit_on)])))
    k_asked = int(k_asked or k)
    if used < k_asked:
        row = {"method": name, "collapsed": True, "clusters_used": used, "clusters_asked": k_asked}
        rows.append(row)
        print(f"  {name:<28} COLLAPSED: {used} of {k_asked} clusters used; no scores", flush=True)
        return row
    row = {"method": name, "acc": hungarian_accuracy(y[te], assign[te]), "nmi": nmi(y[te], assign[te]),
           "purity": purity(y[te], assign[te]), "clusters_used": used, "clusters_asked": k_asked}
    # Each split is a different set of patients (MedMNIST splits by CT scan). The training
    # split is the images every method is fitted on; the validation split is never fitted on
    # (not even with --transductive). Scoring all three tells a clustering that fails on new
    # patients (test below train) from one that fails on its own images (train as low as
    # test): on OrganAMNIST it is the latter, and the validation scans are simply easier than
    # either (README, sixteenth stop).
    if tr.any():
        row.update({"train_acc": hungarian_accuracy(y[tr], assign[tr]), "train_nmi": nmi(y[tr], assign[tr])})
    if va.any():
        row.update({"val_acc": hungarian_accuracy(y[va], assign[va]), "val_nmi": nmi(y[va], assign[va])})
    tr_idx = np.flatnonzero(tr)
    for frac in (0.01, 0.10):
        dev = tr_idx[stratified_fraction(data.y[tr_idx], frac, seed)]
        vectors, counts = algorithm1(assign[dev], data.y[dev], k)
        vectors = np.nan_to_num(vectors[:, :data.y.shape[1]], nan=0.0)  # unmatched: predicts nothing
        th = best_f1_thresholds(data.y[va], vectors[assign[va]])
        pred = apply_thresholds(vectors[assign[te]], th)
        row[f"f1_dev{int(frac * 100)}"] = float(per_class_scores(data.y[te], pred).loc["weighted avg", "f1"])
        row[f"unmatched_dev{int(frac * 100)}"] = int((np.asarray(counts)[:k] == 0).sum())
        row[f"n_dev{int(frac * 100)}"] = int(len(dev))
    rows.append(row)
    other = [f"{sp} {row[sp + '_acc']:.3f} / {row[sp + '_nmi']:.3f}" for sp in ("train", "val") if sp + "_acc" in row]
    splits = f"  ({', '.join(other)})" if other else ""
    print(f"  {name:<28} acc {row['acc']:.3f}  NMI {row['nmi']:.3f}  purity {row['purity']:.3f}{splits}  "
          f"F1(Alg.1, 1% dev) {row['f1_dev1']:.3f}  F1(10% dev) {row['f1_dev10']:.3f}  "
          f"[{used} clusters used; dev sets {row['n_dev1']} / {row['n_dev10']} images]",
          flush=True)
    return row


def _raw_pixels(data) -> np.ndarray:
    return data.x.reshape(len(data.x), -1).astype(np.float32) / 255.0


def kmeans_baselines(data, k, seed, rows, fit_on=("train",)):
    """k-means on raw pixels and on PCA-50; returns both representations (pixels, PCA-50) for
    the feature probes."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = _raw_pixels(data)
    tr = np.isin(data.split, fit_on)  # fitted on the same images as the deep methods
    t = time.perf_counter()
    km = KMeans(k, n_init=3, random_state=seed).fit(x[tr])
    cluster_report("k-means raw pixels", data, km.predict(x), k, seed, rows, fit_on=fit_on)
    rows[-1]["time_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pca = PCA(50, random_state=seed).fit(x[tr])
    z = pca.transform(x)
    km = KMeans(k, n_init=3, random_state=seed).fit(z[tr])
    cluster_report("k-means PCA-50", data, km.predict(z), k, seed, rows, fit_on=fit_on)
    rows[-1]["time_s"] = time.perf_counter() - t
    return x, z


def overclustering_baselines(data, train, dc, seed, rows):
    """DeepCluster's purity at 8K against the same number of clusters without its training:
    its own first k-means (the untrained network's preprocessed features, before any step) and
    k-means on raw pixels, both fitted on the images DeepCluster trains on."""
    from sklearn.cluster import KMeans

    t = time.perf_counter()
    untrained = type(dc)(**{**dc.get_params(), "epochs": 1})
    gen = untrained.steps(train)
    next(p for p in gen if p.losses)  # step 1 is the k-means of the untrained network
    gen.close()
    k8 = int(untrained.k_)
    untrained_assign = np.asarray(untrained.predict_clusters(data), dtype=int)
    untrained_s = time.perf_counter() - t
    t = time.perf_counter()
    x = _raw_pixels(data)
    fit_on = tuple(np.unique(train.split))
    km = KMeans(k8, n_init=1, random_state=seed).fit(x[np.isin(data.split, fit_on)])
    cluster_report(f"k-means raw pixels {k8}", data, km.predict(x), k8, seed, rows, fit_on=fit_on)
    rows[-1]["time_s"] = time.perf_counter() - t
    cluster_report(f"untrained network {k8}", data, untrained_assign, k8, seed, rows, fit_on=fit_on)
    rows[-1]["time_s"] = untrained_s
    return untrained


def feature_probe(name, feats, data, seed, rows, frac: float = 0.10):
    """How much of the classes a representation holds, apart from how a method partitions it:
    test accuracy of a logistic-regression probe and of a 20-nearest-neighbour vote (cosine),
    both fitted on ``frac`` of the training labels (the same stratified draw as Algorithm 1's
    10 % development set). The features are l2-normalised; the linear probe also standardises them.

    Both are scored on the validation split too (other patients than the training split's, as
    the test split's). The val - test gap of the kNN vote says how much harder the test patients
    are to place among the labelled training images than the validation patients; it is not
    a shift the test split alone carries: clusterings score as low on the training images they
    were fitted on as on test (``cluster_report``'s train columns)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler, normalize

    from core.methods.finetune import stratified_fraction

    t = time.perf_counter()
    y = data.class_index
    tr_idx = np.flatnonzero(data.split == "train")
    lab = tr_idx[stratified_fraction(data.y[tr_idx], frac, seed)]
    te, va = data.split == "test", data.split == "val"
    f = normalize(np.asarray(feats, dtype=np.float64).reshape(len(data), -1))
    sc = StandardScaler().fit(f[lab])
    lin = LogisticRegression(max_iter=2000).fit(sc.transform(f[lab]), y[lab])
    knn = KNeighborsClassifier(20).fit(f[lab], y[lab])
    row = {"features": name, "dims": int(f.shape[1]), "n_labels": int(len(lab)),
           "linear_probe_acc": float((lin.predict(sc.transform(f[te])) == y[te]).mean()),
           "knn20_acc": float((knn.predict(f[te]) == y[te]).mean())}
    if va.any():
        row.update({"linear_probe_acc_val": float((lin.predict(sc.transform(f[va])) == y[va]).mean()),
                    "knn20_acc_val": float((knn.predict(f[va]) == y[va]).mean())})
    row["time_s"] = time.perf_counter() - t
    rows.append(row)
    val = (f"  (val: linear {row['linear_probe_acc_val']:.3f}  kNN-20 {row['knn20_acc_val']:.3f})"
           if "knn20_acc_val" in row else "")
    print(f"  probe {name:<26} linear {row['linear_probe_acc']:.3f}  kNN-20 {row['knn20_acc']:.3f}{val}  "
          f"[{row['dims']} dims, {row['n_labels']} training labels]", flush=True)
    return row


def untrained_features(method, train, data) -> np.ndarray:
    """Features of ``method``'s network as built, before any step (its BatchNorm statistics
    set from unaugmented training images, as the trained network's are)."""
    u = type(method)(**{**method.get_params(), "epochs": 0})
    for _ in u.steps(train):
        pass
    if hasattr(u, "_recalibrate"):
        u._recalibrate(u._images(train.x))
    return u.transform(data)


def probe_table(name, rows):
    print(f"\n  {name}, {rows[0]['n_labels'] if rows else 0} training labels | test: linear probe acc | kNN-20 acc "
          f"| val: linear | kNN-20 | kNN-20 val - test")
    for r in rows:
        v = (f" | {r['linear_probe_acc_val']:.3f} | {r['knn20_acc_val']:.3f} | "
             f"{r['knn20_acc_val'] - r['knn20_acc']:+.3f}") if "knn20_acc_val" in r else " | - | - | -"
        print(f"  {r['features']:<30} {r['linear_probe_acc']:.3f} | {r['knn20_acc']:.3f}{v}")


def summary_table(name, rows, goals):
    """The run's table: every method next to k-means on raw pixels and the issue's goals."""
    base = next((r for r in rows if r["method"] == "k-means raw pixels" and "acc" in r), None)
    print(f"\n  {name} test split | acc | NMI | purity | acc - k-means raw | NMI - k-means raw | epochs | CPU s/epoch "
          f"| train split: acc | NMI | val split: acc | NMI")
    for r in rows:
        if r.get("collapsed"):
            print(f"  {r['method']:<30} COLLAPSED ({r['clusters_used']} of {r['clusters_asked']} clusters)")
            continue
        da = f"{r['acc'] - base['acc']:+.3f}" if base else "-"
        dn = f"{r['nmi'] - base['nmi']:+.3f}" if base else "-"
        ep = r.get("epochs", "-")
        cpe = f"{r['cpu_s_per_epoch']:.0f}" if r.get("epochs") else "-"  # none trained: only scored
        splits = "".join(f" | {r[sp + '_acc']:.3f} | {r[sp + '_nmi']:.3f}" if sp + "_acc" in r else " | - | -"
                         for sp in ("train", "val"))
        print(f"  {r['method']:<30} {r['acc']:.3f} | {r['nmi']:.3f} | {r['purity']:.3f} | {da} | {dn} | {ep} | {cpe}"
              f"{splits}")
    if goals:
        print(f"  goals: acc >= {goals['acc']}, NMI >= {goals['nmi']}, both >= k-means raw + "
              f"{goals['over_kmeans_raw']}; DeepCluster purity at 8K >= {goals['purity_8k']}", flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


class ProgressPrinter:
    """The benchmark's progress lines: every start-up message (loading, resizing, network built,
    features for k-means) at once, a step line every ``every_s`` seconds, every epoch end; and,
    every ``eval_every`` optimisation steps, the method's clustering of a fixed test subset
    (accuracy / NMI against the labels, for the learning curves; ``None``: off)."""

    def __init__(self, label, method, probe=None, every_s: float = 20.0, eval_every: int = 0,
                 budget_s: float = 0.0, job=None):
        self.label, self.method, self.probe = label, method, probe
        # a wall-clock budget (GPU leases are short): cancel the job, which stops within one step,
        # and the benchmark scores what was reached
        self.budget_s, self.job = float(budget_s), job
        self.every_s, self.eval_every = float(every_s), int(eval_every)
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()
        self.last = -1e9
        self.curve: list[dict] = []

    def __call__(self, p):
        now = time.perf_counter()
        if self.budget_s and self.job is not None and now - self.t0 > self.budget_s and not self.job.cancel_requested:
            print(f"    [{self.label}] wall-clock budget {self.budget_s:.0f} s reached: stopping here", flush=True)
            self.job.cancel()
        head = f"    [{self.label} {now - self.t0:6.0f} s, CPU {cpu_seconds() - self.c0:6.0f} s]"
        if not p.losses:  # start-up / clustering progress
            if now - self.last >= self.every_s or p.message.endswith(("loaded", "running")) or "loading" in p.message:
                print(f"{head} {p.message}", flush=True)
                self.last = now
            return
        if self.eval_every and self.probe is not None and p.global_step % self.eval_every == 0:
            self.curve.append({"step": p.global_step, "epoch": p.epoch + p.step / max(1, p.steps_per_epoch or 1),
                               "cpu_s": cpu_seconds() - self.c0, **self.probe(self.method)})
        if p.epoch_end or now - self.last >= self.every_s or p.global_step == 1:
            losses = " ".join(f"{k} {v:.3f}" for k, v in p.losses.items())
            extra = f" | test subset acc {self.curve[-1]['acc']:.3f} NMI {self.curve[-1]['nmi']:.3f}" if self.curve else ""
            print(f"{head} epoch {p.epoch + 1}/{p.n_epochs} step {p.step}/{p.steps_per_epoch} {losses}"
                  f"{' | ' + p.message if p.epoch_end else ''}{extra}", flush=True)
            self.last = now


def test_probe(data, n: int, seed: int):
    """A callable scoring a method's clusters on ``n`` fixed test images (acc, NMI, used)."""
    from core.metrics.clustering import hungarian_accuracy, nmi

    te = np.flatnonzero(data.split == "test")
    idx = np.sort(np.random.default_rng([seed, 17]).permutation(te)[:n])
    x, y = data.x[idx], data.class_index[idx]

    def probe(method):
        if hasattr(method, "_recalibrate") and getattr(method, "model_", None) is not None and hasattr(method, "head_sizes_"):
            method._recalibrate(method._images(data.x[data.split == "train"][:method.bn_samples]))
        a = np.asarray(method.predict_clusters(x))
        return {"acc": float(hungarian_accuracy(y, a)), "nmi": float(nmi(y, a)), "used": int(len(np.unique(a)))}

    return probe


def train_method(method, data, ckpt: Path, label: str = "", probe=None, eval_every: int = 0, budget_s: float = 0.0,
                 resume: Path | None = None):
    from core.jobs import Job

    t, c = time.perf_counter(), cpu_seconds()
    job = Job(method, data, checkpoint_path=ckpt, resume=resume)
    printer = ProgressPrinter(label or type(method).__name__, method, probe=probe, eval_every=eval_every,
                              budget_s=budget_s, job=job)
    job.on_progress = printer
    job.run()
    total, cpu = time.perf_counter() - t, cpu_seconds() - c
    ends = [p for p in job.history if p.epoch_end]
    steps = [p for p in job.history if p.losses]
    # epochs trained in this run (a finished checkpoint resumed only to score: none)
    epochs = len(ends) or (steps[-1].epoch + 1 if steps else 0)
    return {"epochs": epochs, "time_s": total, "cpu_s": cpu, "s_per_epoch": total / max(1, epochs),
            "cpu_s_per_epoch": cpu / max(1, epochs), "steps": len(steps),
            "last_losses": steps[-1].losses if steps else {}, "test_curve": printer.curve,
            "epoch_metrics": [{**p.metrics, "epoch": p.epoch + 1} for p in ends], "last_message": ends[-1].message if ends else "",
            "status": str(job.status), "job_message": job.message}


def plot_curves(name, curves: dict, test_curves: dict, out: Path) -> Path | None:
    """One PNG per dataset: test-subset accuracy and NMI during training (every few steps),
    and per epoch the training-subset NMI, used clusters, PUI and prior terms."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [("test:acc", "test subset: Hungarian accuracy"), ("test:nmi", "test subset: NMI"),
              ("nmi", "train subset NMI (epoch end)"), ("n_used_clusters", "clusters used (epoch end)"),
              ("target_pui", "PUI loss, target head (epoch mean)"), ("target_prior", "prior loss, target head")]
    if any("instance_loss" in r for rows in curves.values() for r in rows):
        panels.append(("instance_loss", "instance term (epoch mean)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels):
        if key.startswith("test:"):
            k = key[5:]
            for label, rows in test_curves.items():
                if rows:
                    ax.plot([r["epoch"] for r in rows], [r[k] for r in rows], marker=".", label=label)
        else:
            for label, rows in curves.items():
                ep = [r.get("epoch", i + 1) for i, r in enumerate(rows) if key in r]  # resumed runs start later
                ys = [r[key] for r in rows if key in r]
                if ys:
                    ax.plot(ep, ys, marker="o", label=label)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: learning curves", fontsize=10)
    fig.tight_layout()
    path = out / f"curves_{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def memory_probe(size: int, threads: int) -> dict:
    """Peak RSS of one default PICA step (batch 256 and the default strong copies, bf16 where the
    CPU runs it natively) on random
    128 x 128 images, in its own process so that nothing else counts."""
    code = f"""
import resource, time, numpy as np, torch
torch.set_num_threads({threads})
from core.dataset import SampleSet
from core.methods.pica import PICA
x = np.random.default_rng(0).integers(0, 256, (256, {size}, {size}), dtype=np.uint8)
m = PICA(epochs=1, n_clusters=4, mixed_precision="{default_precision()}", device="cpu", eval_samples=0, bn_samples=0)
t = time.perf_counter()
g = m.steps(SampleSet(ids=np.arange(256), x=x))
next(p for p in g if p.losses)  # the first optimisation step (start-up progress has no losses)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, time.perf_counter() - t,
      m.trunk_config_["backbone"] + ":" + m.trunk_config_["stem"], m.batch_size, m.n_repeat)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr[-500:]}
    rss, secs, stem, bs, rep = r.stdout.split()[-5:]
    return {"size": size, "peak_rss_gib": float(rss), "step_s": float(secs), "stem": stem,
            "batch_size": int(bs), "n_repeat": int(rep)}


def run_dataset(name, args, out_dir: Path):
    import torch

    from core.methods.deepcluster import DeepCluster
    from core.methods.pica import PICA

    data = load_medmnist(name, args.data, args.n_train, args.n_val, args.n_test, args.seed)
    k = data.y.shape[1]
    n = {s: int((data.split == s).sum()) for s in ("train", "val", "test")}
    print(f"\n== {name}: {n['train']} train / {n['val']} val / {n['test']} test images "
          f"(seeded subsets of the official splits unless all), {k} classes, input {args.input_size or 28} px",
          flush=True)
    goals = GOALS.get(name)
    if goals:
        print(f"  goals (issue 13): test acc >= {goals['acc']}, NMI >= {goals['nmi']} and >= k-means raw "
              f"+ {goals['over_kmeans_raw']} in both; purity at 8K >= {goals['purity_8k']}", flush=True)
    rows, curves, test_curves = [], {}, {}
    # --transductive: the unlabelled test images join the training images, as PICA trains on
    # CIFAR's train + test and as a user clusters the whole cohort they imported; labels are
    # never used in training, only to score
    fit_on = ("train", "test") if args.transductive else ("train",)
    train = data.subset(np.flatnonzero(np.isin(data.split, fit_on)))
    pixels, pca50 = kmeans_baselines(data, k, args.seed, rows, fit_on)
    probes = []
    if args.feature_probe:
        feature_probe("raw pixels", pixels, data, args.seed, probes)
        feature_probe("PCA-50 of pixels", pca50, data, args.seed, probes)
    del pixels, pca50
    probe = test_probe(data, args.probe_test, args.seed) if args.eval_every else None
    common = dict(batch_size=args.batch_size, seed=args.seed, device=args.device,
                  input_size=args.input_size, mixed_precision=args.mixed_precision)
    pica_kw = {**dict(n_clusters=k, n_repeat=args.n_repeat, eval_samples=args.eval_samples,
                      lr=args.lr, backbone=args.backbone, head_schedule=args.head_schedule, **common),
               **json.loads(args.pica_params)}  # --pica-params has the last word
    ckpts = {}
    methods = []
    if args.epochs:
        methods.append(("PICA", PICA(prior="entropy", epochs=args.epochs, **pica_kw)))
    if args.sd_epochs:
        methods.append(("PICA + L_SD", PICA(prior="dirichlet", alpha=args.alpha, epochs=args.sd_epochs, **pica_kw)))
    if args.dc_epochs:
        # --dc-params has the last word (it may name the backbone or the learning rate too)
        dc_kw = {"backbone": args.dc_backbone, "lr": args.dc_lr, **common,
                 **({} if args.dc_pca is None else {"pca_dim": args.dc_pca}), **json.loads(args.dc_params)}
        methods.append(("DeepCluster", DeepCluster(epochs=args.dc_epochs, **dc_kw)))
    dc = next((m for label, m in methods if label == "DeepCluster"), None)
    dc_untrained = overclustering_baselines(data, train, dc, args.seed, rows) if dc is not None else None
    for label, method in methods:
        ckpts[label] = out_dir / f"{name}-{label.replace(' ', '').replace('+', '-')}.pt"
        print(f"  training {label}: " + json.dumps({k_: v for k_, v in method.get_params().items()
                                                     if not isinstance(v, (list, dict))}), flush=True)
        is_dc = label == "DeepCluster"
        # --resume-dir: continue (or, when finished, only score) a run's checkpoint of this method
        resume = args.resume_dir / ckpts[label].name if args.resume_dir else None
        if resume is not None and not resume.exists():
            raise SystemExit(f"{resume}: no checkpoint of {label} to resume")
        if resume is not None:
            print(f"  {label}: resuming from {resume}", flush=True)
        info = train_method(method, train, ckpts[label], label, probe=None if is_dc else probe,
                            eval_every=0 if is_dc else args.eval_every, budget_s=args.budget_s, resume=resume)
        t = time.perf_counter()
        try:
            assign = np.asarray(method.predict_clusters(data), dtype=int)
        except RuntimeError as e:
            if info["status"] != "cancelled":
                raise
            # stopped by --budget-s before the method had anything to score
            print(f"  {label}: not scored ({e}); {info['status']} after {info['time_s']:.0f} s", flush=True)
            continue
        k_asked = int(method.k_) if is_dc else k
        k_out = int(max(assign.max() + 1, k_asked))
        shown = f"DeepCluster {k_asked} ({k_asked // k}K)" if is_dc else label
        cluster_report(shown, data, assign, k_out, args.seed, rows, k_asked=k_asked, fit_on=fit_on)
        rows[-1].update({"epochs": info["epochs"], "s_per_epoch": info["s_per_epoch"], "time_s": info["time_s"],
                         "cpu_s": info["cpu_s"], "cpu_s_per_epoch": info["cpu_s_per_epoch"], "steps": info["steps"],
                         "predict_s": time.perf_counter() - t, "status": info["status"]})
        curves[label] = info["epoch_metrics"]
        test_curves[label] = info["test_curve"]
        print(f"    {info['epochs']} epochs ({info['steps']} steps), {info['s_per_epoch']:.0f} s/epoch wall, "
              f"{info['cpu_s_per_epoch']:.0f} s/epoch CPU, wall {info['time_s']:.0f} s, CPU {info['cpu_s']:.0f} s, "
              f"load average {os.getloadavg()[0]:.1f}; {info['status']}; last epoch: {info['last_message']}",
              flush=True)
        if hasattr(method, "predict_overclusters"):  # PICA's over-clustering head, next to 8K k-means
            over = np.asarray(method.predict_overclusters(data), dtype=int)
            k_over = int(method.head_sizes_[0])
            # an over-clustering head may leave clusters empty by design: scored with those it uses
            used = int(len(np.unique(over[np.isin(data.split, fit_on)])))
            cluster_report(f"{label} over-clustering {used}/{k_over}", data, over, k_over, args.seed,
                           rows, k_asked=used, fit_on=fit_on)
        # K-cluster k-means on the learned features (DeepCluster's K-cluster reading; for PICA,
        # the partition its features hold apart from its head)
        from sklearn.cluster import KMeans

        from core.cluster.merge import merge_overclusters, merge_soft_overclusters

        feats = method.transform(data)
        tr = np.isin(data.split, fit_on)
        km = KMeans(k, n_init=3, random_state=args.seed).fit(feats[tr])
        cluster_report(f"{label} feats k-means {k}", data, km.predict(feats), k, args.seed, rows,
                       fit_on=fit_on)
        # the over-clusters (PICA's 7 x K head, DeepCluster's 8 x K) joined into K by average
        # linkage of their centroids: another K-cluster reading (bench/merged_overclusters.py).
        # PICA's by its head's probabilities, as its argmax is often a near tie
        if hasattr(method, "predict_overcluster_proba"):
            merged = merge_soft_overclusters(feats, method.predict_overcluster_proba(data), k, fit_mask=tr)[0]
        else:
            merged = merge_overclusters(feats, assign, k, fit_mask=tr)
        cluster_report(f"{label} merged to {k}", data, merged, k, args.seed, rows, fit_on=fit_on)
        if args.feature_probe:
            before = dc_untrained.transform(data) if is_dc and dc_untrained is not None else \
                untrained_features(method, train, data)
            feature_probe(f"{label}, untrained network", before, data, args.seed, probes)
            feature_probe(label, feats, data, args.seed, probes)
        torch.manual_seed(args.seed)
    png = plot_curves(name, curves, test_curves, out_dir)
    if png:
        print(f"  learning curves: {png}")
    summary_table(name, rows, goals)
    if probes:
        probe_table(name, probes)
    print(f"  peak RSS so far {peak_rss_gib():.2f} GiB", flush=True)
    return {"dataset": name, "sizes": n, "clustering": rows, "feature_probes": probes, "curves": curves,
            "test_curves": test_curves, "goals": goals}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="organamnist,breastmnist")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--n-train", type=int, default=0, help="training images per dataset (0 = all)")
    p.add_argument("--n-val", type=int, default=0, help="validation images (0 = all)")
    p.add_argument("--n-test", type=int, default=0, help="test images (0 = all)")
    p.add_argument("--input-size", type=int, default=0, help="resize on load (0 = stored 28 px)")
    p.add_argument("--epochs", type=int, default=3, help="PICA (entropy prior) epochs (0 = skip)")
    p.add_argument("--sd-epochs", type=int, default=2, help="PICA + L_SD (Dirichlet prior) epochs (0 = skip)")
    p.add_argument("--dc-epochs", type=int, default=2, help="DeepCluster epochs (0 = skip)")
    p.add_argument("--dc-backbone", default="convnet_small", help="DeepCluster trunk (DeepMCAT: vgg16_bn)")
    p.add_argument("--dc-lr", type=float, default=0.05, help="DeepCluster SGD learning rate (DeepMCAT: 0.05)")
    p.add_argument("--dc-params", default="{}", help="more DeepCluster hyperparameters, as JSON")
    p.add_argument("--dc-pca", type=int, default=None,
                   help="DeepCluster PCA-whitening dims (default: the method's, 64; 0: l2 only, DeepMCAT)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="PICA Adam learning rate")
    p.add_argument("--head-schedule", default="joint", choices=("joint", "alternate"))
    p.add_argument("--n-repeat", type=int, default=1, help="PICA strong copies per image")
    p.add_argument("--alpha", type=float, default=1.5, help="Dirichlet alpha of L_SD")
    p.add_argument("--eval-samples", type=int, default=2000, help="PICA per-epoch scoring sample (train)")
    p.add_argument("--eval-every", type=int, default=40, help="score a fixed test subset every N steps (0: off)")
    p.add_argument("--probe-test", type=int, default=2000, help="test images in that subset")
    p.add_argument("--backbone", default="convnet_small", help="PICA trunk")
    p.add_argument("--pica-params", default="{}", help='more PICA hyperparameters as JSON, e.g. {"sobel": true}')
    p.add_argument("--mixed-precision", default=default_precision(), choices=("auto", "bf16", "off"),
                   help="default: bf16 where the CPU has bf16 instructions (AMX, AVX-512 BF16), else auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--probe-size", type=int, default=128, help="memory probe image size (0 = skip)")
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="wall-clock seconds per method: stop training there and score it (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transductive", action="store_true",
                   help="train on the training and the (unlabelled) test images, score on the test images")
    p.add_argument("--feature-probe", action=argparse.BooleanOptionalAction, default=True,
                   help="linear-probe and kNN-20 test accuracy of each representation with 10 %% of the "
                        "training labels (raw pixels, PCA-50, each method before and after training)")
    p.add_argument("--resume-dir", type=Path, default=None,
                   help="continue each method from its checkpoint in this earlier --out folder (same "
                        "settings; a larger epoch count trains on, the same one only scores)")
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench_deep_clustering")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from core.device import pick_device

    args.out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(args.device)
    print(f"CPU: {cpu_model()} ({args.threads} torch threads); device: {dev}"
          + (f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""), flush=True)
    print("settings: " + json.dumps({k: str(v) for k, v in vars(args).items()}), flush=True)
    print(f"load average at start {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs shared)", flush=True)
    probe = None
    if args.probe_size:
        probe = memory_probe(args.probe_size, args.threads)
        print(f"memory probe: one default PICA step at {args.probe_size} px: {probe}", flush=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    results = [run_dataset(name.strip(), args, args.out) for name in args.datasets.split(",") if name.strip()]
    total, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"\ntotal wall time {total / 60:.1f} min, CPU time {cpu / 60:.1f} min, peak RSS {peak_rss_gib():.2f} GiB, "
          f"load average at end {os.getloadavg()[0]:.1f}")
    (args.out / "results.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                                       "cpu": cpu_model(), "device": str(dev), "total_s": total,
                                                       "cpu_s": cpu, "peak_rss_gib": peak_rss_gib(),
                                                       "memory_probe": probe, "results": results},
                                                      indent=1, default=float))
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
