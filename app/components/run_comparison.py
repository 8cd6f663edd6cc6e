"""Runs side by side on the labels that exist (no Qt): retrieval mAP (overall and
class-balanced) of each run's embedding, and NMI / Hungarian accuracy / purity of each run's
own clustering, on the same split's single-labelled samples; and a plain verdict on whether a
trained run does better than the baseline first map.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.workflows.baseline import BASELINE_METHODS

#: a trained run must beat the baseline's class-balanced mAP by at least this to count as better
MARGIN = 0.01
COLUMNS = ["run", "method", "n", "mAP", "mAP (class-balanced)", "NMI", "accuracy", "purity", "clustering"]


def runs_to_compare(project, run_id: int) -> list[int]:
    """``run_id``, the latest other trained run with an embedding, and the latest baseline."""
    runs = project.runs()
    embedded = [int(r) for r in runs["id"] if project.has_embedding(int(r))]
    methods = dict(zip(runs["id"].astype(int), runs["method"]))
    out = [int(run_id)]
    others = [r for r in embedded if r != run_id and methods.get(r) not in BASELINE_METHODS]
    if others:
        out.append(others[-1])
    base = [r for r in embedded if methods.get(r) in BASELINE_METHODS and r != run_id]
    if base:
        out.append(base[-1])
    return out


def run_scores(project, run_id: int, split: str = "test") -> dict:
    """One comparison row for ``run_id`` (NaN where a figure cannot be computed)."""
    from core.evaluation import labelled_embedding
    from core.metrics.clustering import clustering_scores
    from core.metrics.retrieval import retrieval_map
    from core.workflows.clustering import run_clustering

    run = project.run(int(run_id))
    row = {"run": int(run_id), "method": run["method"], "n": 0, "mAP": np.nan,
           "mAP (class-balanced)": np.nan, "NMI": np.nan, "accuracy": np.nan, "purity": np.nan,
           "clustering": ""}
    try:
        ids, emb, y, names = labelled_embedding(project, int(run_id), split)
    except ValueError:
        return row
    r = retrieval_map(emb, y, class_names=names)
    row.update({"n": int(len(ids)), "mAP": float(r.map), "mAP (class-balanced)": float(r.map_balanced)})
    name = run_clustering(project, int(run_id))
    if name:
        cids, assign = project.load_clustering(name)
        cluster_of = dict(zip(cids, assign))
        inside = np.array([s in cluster_of for s in ids])
        if inside.sum() >= 2:
            s = clustering_scores(y[inside], np.array([cluster_of[i] for i in ids[inside]]))
            row.update({"NMI": s["nmi"], "accuracy": s["acc"], "purity": s["purity"], "clustering": name})
    return row


def compare_runs(project, run_ids, split: str = "test") -> pd.DataFrame:
    return pd.DataFrame([run_scores(project, r, split) for r in run_ids], columns=COLUMNS)


def verdict(table: pd.DataFrame, run_id: int) -> tuple[str, bool | None]:
    """('run 3 is no better than the baseline (run 2): class-balanced mAP 0.51 vs 0.52', False).
    None as the flag when there is no baseline or no labels to judge by."""
    if table.empty or int(run_id) not in set(table["run"]):
        return "", None
    me = table[table["run"] == int(run_id)].iloc[0]
    if me["method"] in BASELINE_METHODS:
        return f"run {run_id} is the baseline first map (no training)", None
    base = table[table["method"].isin(BASELINE_METHODS)]
    if base.empty:
        return "no baseline run to compare with", None
    b = base.iloc[-1]
    key = "mAP (class-balanced)"
    if not (np.isfinite(me[key]) and np.isfinite(b[key])):
        return "no labelled samples in this split to compare the run with the baseline", None
    better = bool(me[key] >= b[key] + MARGIN)
    what = "better than" if better else "NO BETTER than"
    return (f"run {run_id} ({me['method']}) is {what} the baseline first map (run {int(b['run'])}, "
            f"{b['method']}): class-balanced retrieval mAP {me[key]:.3f} vs {b[key]:.3f}"
            + (f", NMI {me['NMI']:.3f} vs {b['NMI']:.3f}" if np.isfinite(me["NMI"]) and np.isfinite(b["NMI"]) else ""),
            better)
