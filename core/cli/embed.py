"""``latentmap embed --project DIR [--run ID]``: features for every sample from a trained run.

Loads the run's checkpoint through its method class (``Method.from_checkpoint``) and calls
``core.pipeline.apply_run``: embedding, PCA projection and a clustering stored in the project,
for samples seen in training and new ones alike.
"""
from __future__ import annotations

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("embed", help="embed every sample with a trained run",
                       description="Embed every sample of the project with a trained run's checkpoint "
                                   "(new samples included); stores the embedding, its PCA and a clustering.")
    add_project_arg(p)
    p.add_argument("--run", type=int, help="run id (default: the active run, else the latest with a checkpoint)")
    p.add_argument("--dataset", help="only the samples of this imported dataset")
    p.add_argument("--clusters", type=int, help="k-means clusters (default: one per label)")
    p.add_argument("--umap", metavar="SPLIT", action="append", default=[],
                   help="also store a UMAP of this split's embedding (train/val/test/all; repeatable)")
    p.set_defaults(func=run_embed)


def pick_run(project, run_id: int | None) -> dict:
    """The run asked for, else the project's active run, else the latest run with a checkpoint."""
    if run_id is not None:
        return project.run(run_id)
    active = project.meta("active_run")
    if active:
        return project.run(int(active))
    runs = project.runs()
    runs = runs[runs["checkpoint"].fillna("").astype(str) != ""]
    if runs.empty:
        raise ValueError(f"no trained run with a checkpoint in {project.path}; run `latentmap train` first")
    return project.run(int(runs["id"].iloc[-1]))


def load_run_method(run: dict):
    from ..methods.registry import FINETUNERS, METHODS, get_finetuner, get_method

    name = run["method"]
    if name in METHODS:
        cls = get_method(name)
    elif name in FINETUNERS:
        cls = get_finetuner(name)
    else:
        raise ValueError(f"run {run['id']}: unknown method {name!r}")
    if not run.get("checkpoint"):
        raise ValueError(f"run {run['id']} ({name}) has no checkpoint")
    return cls.from_checkpoint(run["checkpoint"])


def run_embed(args) -> int:
    import time

    from ..pipeline import apply_run

    project = open_project(args.project)
    run = pick_run(project, args.run)
    print(f"run {run['id']}: {run['method']} ({run['status']}), checkpoint {run['checkpoint']}")
    t0 = time.perf_counter()
    method = load_run_method(run)
    lines = apply_run(project, method, int(run["id"]), dataset=args.dataset, n_clusters=args.clusters)
    for split in args.umap:
        lines.append(store_umap(project, int(run["id"]), split))
    for line in lines:
        print(f"  {line}")
    print(f"  done in {time.perf_counter() - t0:.1f} s")
    return 0


def store_umap(project, run_id: int, split: str = "all") -> str:
    """UMAP (cosine) of a run's embedding for one split -> ``projections/run-XXXX-umap-SPLIT``."""
    import numpy as np

    from ..pipeline import run_name
    from ..projection import umap_project

    ids, emb = project.arrays.load(f"embeddings/{run_name(run_id)}")
    ids = np.asarray(ids).astype(str)
    if split != "all":
        want = project.samples(split=split)["id"].astype(str).to_numpy()
        keep = np.isin(ids, want)
        ids, emb = ids[keep], emb[keep]
    if len(ids) < 3:
        raise ValueError(f"run {run_id}: {len(ids)} embedded samples in split {split!r}, too few for UMAP")
    proj = umap_project(emb, n_neighbors=min(15, len(ids) - 1))
    name = f"projections/{run_name(run_id)}-umap-{split}"
    project.arrays.save(name, np.asarray(proj, dtype=np.float32), ids=ids)
    return f"projection: {name} ({len(ids)} samples)"
