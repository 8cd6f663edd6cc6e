"""``latentmap embed --project DIR [--run ID] [--umap SPLIT]``: features for every sample from a trained run.

Loads the run's checkpoint and calls ``core.workflows.apply.apply_run``: embedding and PCA
stored in the project; the run's clustering is kept (its mapping and overrides untouched),
samples new to it are placed in their nearest clusters. ``--clusters K`` makes a new
clustering beside it. ``--umap all`` stores the UMAP the app shows.
"""
from __future__ import annotations

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("embed", help="embed every sample with a trained run",
                       description="Embed every sample of the project with a trained run's checkpoint "
                                   "(new samples included); stores the embedding and its PCA. The run's "
                                   "clustering, its mapping and overrides are kept; new samples join their "
                                   "nearest cluster.")
    add_project_arg(p)
    p.add_argument("--run", type=int, help="run id (default: the active run, else the latest with a checkpoint)")
    p.add_argument("--dataset", help="only the samples of this imported dataset")
    p.add_argument("--clusters", type=int,
                   help="also make a NEW k-means clustering with this many clusters (the existing one is kept)")
    p.add_argument("--umap", metavar="SPLIT", action="append", default=[],
                   help="also store a UMAP of this split's embedding (all = the one the app shows; "
                        "train/val/test; repeatable)")
    p.set_defaults(func=run_embed)


def run_embed(args) -> int:
    import time

    from ..workflows.apply import apply_run
    from ..workflows.projections import store_umap
    from ..workflows.runs import load_run_method, pick_run

    project = open_project(args.project)
    run = pick_run(project, args.run)
    print(f"run {run['id']}: {run['method']} ({run['status']}), checkpoint {run['checkpoint']}")
    t0 = time.perf_counter()
    method = load_run_method(run, project)
    lines = apply_run(project, method, int(run["id"]), dataset=args.dataset, n_clusters=args.clusters)
    for split in args.umap:
        lines.append(store_umap(project, int(run["id"]), split))
    for line in lines:
        print(f"  {line}")
    print(f"  done in {time.perf_counter() - t0:.1f} s")
    return 0
