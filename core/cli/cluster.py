"""``latentmap cluster --project DIR [--run ID] [--k K] [--ids-file FILE]``: k-means on a stored embedding.

Clusters a run's embedding (``embeddings/run-XXXX``, written by ``train``/``embed``), all of it
or the samples listed in ``--ids-file`` (one id per line: re-clustering a selection), and saves
the result as a clustering of the project. Prints cluster sizes and, when the samples carry
labels, NMI, Hungarian accuracy, ARI and purity against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("cluster", help="k-means on a run's stored embedding",
                       description="k-means on a run's stored embedding (all samples or a subset); "
                                   "saves the clustering in the project.")
    add_project_arg(p)
    p.add_argument("--run", type=int, help="run id (default: the active run, else the latest embedding)")
    p.add_argument("--k", type=int, help="number of clusters (default: the number of labels, else 10)")
    p.add_argument("--ids-file", help="cluster only these sample ids (text file, one id per line)")
    p.add_argument("--name", help="clustering name (default: run-XXXX-kmeansK[-subset])")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    p.set_defaults(func=run_cluster)


def pick_embedding(project, run_id: int | None) -> tuple[int, str]:
    """(run id, array name) of the embedding asked for, the active run's, or the latest stored."""
    from ..pipeline import run_name

    if run_id is None:
        active = project.meta("active_run")
        if active and project.arrays.exists(f"embeddings/{run_name(int(active))}"):
            run_id = int(active)
    if run_id is None:
        names = sorted(n for n in project.arrays.names("embeddings/") if n.startswith("embeddings/run-"))
        if not names:
            raise ValueError(f"no stored embedding in {project.path}; run `latentmap train` or `latentmap embed` first")
        name = names[-1]
        return int(name.rsplit("-", 1)[-1]), name
    name = f"embeddings/{run_name(run_id)}"
    if not project.arrays.exists(name):
        raise ValueError(f"run {run_id} has no stored embedding ({name}); run `latentmap embed --run {run_id}`")
    return int(run_id), name


def read_ids_file(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ids file {p} does not exist")
    ids = [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not ids:
        raise ValueError(f"ids file {p} lists no sample id")
    return ids


def run_cluster(args) -> int:
    from ..cluster import kmeans
    from ..metrics.clustering import clustering_scores

    project = open_project(args.project)
    run_id, name = pick_embedding(project, args.run)
    ids, emb = project.arrays.load(name)
    ids = np.asarray(ids).astype(str)
    subset = args.ids_file is not None
    if subset:
        want = read_ids_file(args.ids_file)
        pos = {s: i for i, s in enumerate(ids)}
        missing = [s for s in want if s not in pos]
        if missing:
            raise ValueError(f"{args.ids_file}: {len(missing)} ids not in {name} (first: {missing[0]!r})")
        sel = np.array([pos[s] for s in dict.fromkeys(want)])
        ids, emb = ids[sel], emb[sel]
    names, y = project.labels_in_use(list(ids))
    k = args.k or (len(names) or 10)
    if k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    if k > len(ids):
        raise ValueError(f"--k {k} exceeds the {len(ids)} samples to cluster")
    assign = kmeans(emb, k, seed=args.seed)
    cname = args.name or f"{name.split('/', 1)[1]}-kmeans{k}" + ("-subset" if subset else "")
    # an embedding written outside a recorded run (e.g. a baseline) has no run row to point to
    runs = project.runs()
    known_runs = set(runs["id"].astype(int)) if len(runs) else set()
    project.save_clustering(cname, list(ids), assign, run_id=run_id if run_id in known_runs else None,
                            params={"source": "kmeans", "k": k, "embedding": name, "subset": subset,
                                    "seed": args.seed})
    project.set_meta("active_clustering", cname)
    sizes = np.bincount(assign, minlength=k)
    print(f"clustering {cname}: {len(ids)} samples of {name} in {k} clusters")
    print("  sizes: " + " ".join(f"{c}:{n}" for c, n in enumerate(sizes)))
    if names:
        from ..metrics.clustering import reference_labels

        ref = reference_labels(y)
        ok = ref >= 0
        if ok.sum() >= 2:
            s = clustering_scores(ref[ok], assign[ok])
            print(f"  against labels ({int(ok.sum())} labelled): NMI {s['nmi']:.3f}  ACC {s['acc']:.3f}  "
                  f"ARI {s['ari']:.3f}  purity {s['purity']:.3f}")
    return 0
