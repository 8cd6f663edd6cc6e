"""``latentmap cluster --project DIR [--run ID] [--k K] [--ids-file FILE] [--over-head] [--merge K]``: k-means on a stored embedding.

Clusters a run's embedding (written by ``train``/``embed``), all of it or the samples listed in
``--ids-file`` (one id per line: re-clustering a selection), and saves the result as a NEW
clustering of the project (``core.workflows.clustering.recluster``: undoable; an existing
clustering, its Algorithm-1 mapping and overrides are never replaced). ``--over-head`` takes
the clusters of the run's over-clustering head instead of k-means (PICA's 7 x K: the finer
clusters Algorithm 1 maps to labels best). ``--merge K`` joins an existing clustering's clusters
(``--clustering``, default the active one) into K by average linkage of their centroids; an
over-clustering head's clusters are weighed by that head's probabilities (a progress bar while
it predicts them). Prints cluster sizes and, when the samples carry labels, NMI, Hungarian
accuracy, ARI and purity against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("cluster", help="k-means on a run's stored embedding (or its over-clustering head, or a merge)",
                       description="k-means on a run's stored embedding (all samples or a subset), the run's "
                                   "over-clustering head (--over-head), or an existing clustering's clusters "
                                   "joined into K (--merge K); saves the result as a new clustering in the project.")
    add_project_arg(p)
    p.add_argument("--run", type=int, help="run id (default: the active run, else the latest embedding)")
    p.add_argument("--k", type=int, help="number of clusters (default: the number of labels, else 10)")
    p.add_argument("--ids-file", help="cluster only these sample ids (text file, one id per line)")
    p.add_argument("--name", help="clustering name (default: run-XXXX-kmeansK[-subset], -2, -3... when taken; "
                                  "an existing clustering is never replaced)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    p.add_argument("--merge", type=int, metavar="K",
                   help="join the clusters of --clustering (default: the active one) into K by average "
                        "linkage of their centroids, as a new clustering (for an over-clustering; one from "
                        "--over-head is weighed by the head's probabilities)")
    p.add_argument("--clustering", help="the clustering --merge joins (default: the active clustering)")
    p.add_argument("--over-head", action="store_true",
                   help="the clusters of the run's over-clustering head (PICA) instead of k-means; "
                        "not with --k or --ids-file")
    p.set_defaults(func=run_cluster)


def read_ids_file(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ids file {p} does not exist")
    ids = [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not ids:
        raise ValueError(f"ids file {p} lists no sample id")
    return ids


def run_cluster(args) -> int:
    from ..metrics.clustering import clustering_scores
    from ..project.accessors import embedding_key
    from ..workflows.clustering import recluster
    from ..workflows.runs import pick_embedded_run

    project = open_project(args.project)
    run_id = pick_embedded_run(project, args.run)
    ids = read_ids_file(args.ids_file) if args.ids_file is not None else None
    if args.k is not None and args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    if args.clustering is not None and args.merge is None:
        raise ValueError("--clustering names the clustering --merge joins: give --merge K too")
    if args.merge is not None:
        if args.k is not None or ids is not None or args.over_head:
            raise ValueError("--merge joins an existing clustering's clusters: not with --k, --ids-file or --over-head")
        from ..workflows.clustering import merge_clustering

        cname = _with_bar("merging", merge_clustering, project, args.clustering, k=args.merge, name=args.name)
        run_id = project.clustering_info(cname)["run_id"]
    elif args.over_head:
        if args.k is not None or ids is not None:
            raise ValueError("--over-head takes the head's own clusters of every sample: not with --k or --ids-file")
        cname = _over_head(project, run_id, args.name)
    else:
        try:
            cname = recluster(project, run_id, k=args.k, ids=ids, seed=args.seed, name=args.name)
        except ValueError as exc:
            raise ValueError(f"{args.ids_file}: {exc}" if args.ids_file and "not in" in str(exc) else str(exc)) from None
    cids, assign = project.load_clustering(cname)
    k = int(assign.max()) + 1 if len(assign) else 0
    sizes = np.bincount(assign, minlength=k)
    # a head may leave some of its clusters empty: those are not listed
    print(f"clustering {cname}: {len(cids)} samples of {embedding_key(run_id)} in {int((sizes > 0).sum())} clusters "
          "(a new clustering: earlier ones keep their mapping; undo removes it)")
    print("  sizes: " + " ".join(f"{c}:{n}" for c, n in enumerate(sizes) if n))
    names, y = project.labels_in_use(list(cids))
    if names:
        from ..metrics.clustering import reference_labels

        ref = reference_labels(y)
        ok = ref >= 0
        if ok.sum() >= 2:
            s = clustering_scores(ref[ok], assign[ok])
            print(f"  against labels ({int(ok.sum())} labelled): NMI {s['nmi']:.3f}  ACC {s['acc']:.3f}  "
                  f"ARI {s['ari']:.3f}  purity {s['purity']:.3f}")
    return 0


def _with_bar(desc: str, run, *args, **kw):
    """``run(*args, on_step=..., **kw)`` (a workflow's step generator run to the end) with a
    progress bar over its steps."""
    import sys

    from tqdm import tqdm

    with tqdm(desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        def step(prog):
            bar.total = prog.steps_per_epoch or bar.total
            if prog.global_step > bar.n:
                bar.update(prog.global_step - bar.n)
        return run(*args, on_step=step, **kw)


def _over_head(project, run_id: int, name: str | None) -> str:
    """The over-clustering head's clusters as a new clustering, with a progress bar."""
    from ..workflows.clustering import cluster_from_overclustering_head

    return _with_bar("over-clustering head", cluster_from_overclustering_head, project, run_id, name=name)
