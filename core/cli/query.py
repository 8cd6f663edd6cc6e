"""``latentmap query FILE... --project P [--run N] [--k 8] [--structure NAME|VALUE] [--json]``.

A new case against a trained run: imports the file(s) when new (a scan with its label map, a
mask, a mesh, an image), derives what the run reads (the chosen structure's mesh and 1024
points), places them (nearest existing cluster, its prediction with support, the k nearest
known cases by cosine distance) without retraining, re-clustering or touching the mapping,
and prints per case the predicted class and the neighbours.
"""
from __future__ import annotations

import sys

from ._common import open_project


def register(sub) -> None:
    p = sub.add_parser("query", help="nearest known cases and likely class of new files",
                       description="Import new file(s) if needed, embed them with a trained run and print "
                                   "their predicted class (with its support) and k nearest known cases "
                                   "(cosine distance). Nothing the project holds is re-clustered or remapped.")
    p.add_argument("files", nargs="+", metavar="FILE", help="scan (+ label map), mask, mesh or image")
    p.add_argument("--project", "-p", required=True, help="project folder with a trained run")
    p.add_argument("--run", type=int, help="run id (default: the active run)")
    p.add_argument("--k", type=int, default=8, help="nearest known cases to list (default 8)")
    p.add_argument("--structure", action="append", default=[], metavar="NAME|VALUE",
                   help="structure of a multi-label map to use (name from its label table, or value); repeatable")
    p.add_argument("--dataset", default="query", help="dataset name for newly imported files (default: query)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    # a fresh process per query: once the answer is printed and stored, skip the interpreter's
    # teardown of torch & co. (~0.5 s of CPU; see core.cli.main)
    p.set_defaults(func=run_query, fast_exit=True)


def fmt_distance(d: float) -> str:
    """4 significant digits."""
    return f"{d:.4g}"


def run_query(args) -> int:
    import json

    from ..workflows.derive import import_and_derive
    from ..workflows.place import Placer

    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    project = open_project(args.project)
    placer = Placer(project, args.run)
    if placer.input_kind:
        import torch

        # a few cases: one thread, so a shared 2-core machine does not spin-wait between threads
        torch.set_num_threads(1)   # fails early (no embedding) before importing anything
    report = import_and_derive(project, args.files, dataset=args.dataset, structures=args.structure,
                               points=placer.input_kind == "points")
    problems = list(report.import_report.skipped) + list(report.structure_errors) + list(report.points_failed)
    failed = {str(s) for s, _ in report.points_failed}
    ids = [s for s in report.sample_ids if s not in failed]
    for where, why in problems:
        print(f"latentmap query: {where}: {why}", file=sys.stderr)
    if not ids:
        raise ValueError("no new case to place: " + ("; ".join(f"{w}: {r}" for w, r in problems)
                                                    or "the files hold no sample"))
    # the answer first; the new rows are appended to the run's arrays after it is printed (a
    # 100,000-row embedding is rewritten for that, which the answer does not need)
    placements = placer.place(ids, k=args.k, store="later")
    if args.json:
        print(json.dumps([p.as_dict() for p in placements], indent=1))
    else:
        print(f"run {placer.run_id}, clustering {placer.clustering or '(none)'}")
        for p in placements:
            print(f"\n{p.id}")
            print(f"  predicted: {p.prediction.describe()}"
                  + (f" (cluster {p.cluster})" if p.cluster is not None and p.prediction.labels else ""))
            print(f"  {len(p.neighbours)} nearest known cases (cosine distance):")
            for n in sorted(p.neighbours, key=lambda n: n.distance):
                print(f"    {fmt_distance(n.distance):>10}  {n.id}  [{', '.join(n.labels) or 'unlabelled'}]")
    sys.stdout.flush()
    placer.store_placed()
    project.close()
    return 0
