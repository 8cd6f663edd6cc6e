"""``latentmap evaluate --project DIR [--run ID] [--out DIR]``: retrieval mAP and Table 1.

Uses the run's stored embedding (``latentmap embed`` or the end of ``latentmap train``) and the
project's labels on one split (default test): leave-one-out cosine retrieval mAP (overall, per
class, class-balanced) and the inner-ear paper's Table 1, written as CSV + markdown with ROC/PR
curves and the cosine distance matrix as PNGs. The summary is also stored in the run's metrics.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="retrieval mAP and Table 1 of a run's embedding",
                       description="Retrieval mAP and the inner-ear Table 1 on a labelled split, "
                                   "from a run's stored embedding; writes CSV, markdown and PNG figures.")
    add_project_arg(p)
    p.add_argument("--run", type=int, help="run id (default: the active run, else the latest with a checkpoint)")
    p.add_argument("--out", help="report folder (default: the run's folder / evaluation-SPLIT)")
    p.add_argument("--split", default="test", help="which split to evaluate (default: test; 'all' for every sample)")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    from ..evaluation import labelled_embedding
    from ..metrics.report import write_retrieval_report
    from ..workflows.runs import pick_run

    project = open_project(args.project)
    if args.split != "all":
        splits = sorted(str(x) for x in project.samples()["split"].dropna().unique() if str(x))
        if args.split not in splits:
            sys.stderr.write(f"latentmap evaluate: {project.path} has no {args.split!r} split ("
                             + (f"its splits: {', '.join(splits)}" if splits else "no samples carry a split")
                             + "); use --split all to evaluate every labelled sample\n")
            return 2
    run = pick_run(project, args.run)
    run_id = int(run["id"])
    ids, emb, lab, names = labelled_embedding(project, run_id, args.split)
    out = Path(args.out) if args.out else project.run_dir(run_id) / f"evaluation-{args.split}"
    res = write_retrieval_report(out, emb, lab, class_names=names,
                                 title=f"run {run_id} ({run['method']}), {args.split} split")
    ret, t1 = res["retrieval"], res["table1"]
    print(f"run {run_id} ({run['method']}), split {args.split}: {len(ids)} labelled samples, "
          f"{len(names)} classes")
    print(f"  retrieval mAP {ret.map:.4f}, class-balanced {ret.map_balanced:.4f}")
    for c, v in ret.map_per_class.items():
        print(f"    {c}: {v:.4f} (n={ret.support[c]})")
    for row in ("max accuracy", "mean accuracy", "mean roc_auc", "mean ap", "max f1", "mean pr_auc"):
        print(f"  Table 1 {row}: {t1.table[row]['overall']:.4f}")
    print(f"  report: {out}")
    metrics = dict(run.get("metrics") or {})
    metrics[f"evaluation_{args.split}"] = {"map": ret.map, "map_balanced": ret.map_balanced,
                                           "map_per_class": ret.map_per_class,
                                           "table1_overall": {k: v["overall"] for k, v in t1.table.items()},
                                           "report": str(out)}
    project.update_run(run_id, metrics=metrics)
    return 0
