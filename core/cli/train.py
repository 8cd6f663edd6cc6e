"""``latentmap train METHOD --project DIR``: run any registered method as a job with a progress bar."""
from __future__ import annotations

import argparse

from ._common import add_project_arg, describe_params, open_project, parse_param_overrides


def register(sub) -> None:
    from ..methods.registry import METHODS

    p = sub.add_parser(
        "train", help="train a method on a project",
        description="Train a method on a project. Hyperparameters: --set NAME=VALUE (see --list-params).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=sorted(METHODS))
    _add_run_options(p)
    p.set_defaults(func=lambda a: run_training(a, table="methods"))


def _add_run_options(p) -> None:
    add_project_arg(p)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable)")
    p.add_argument("--dataset", help="only the samples of this imported dataset")
    p.add_argument("--resume", metavar="RUN_ID", type=int,
                   help="continue a cancelled or interrupted run from its checkpoint")
    p.add_argument("--no-embed", action="store_true",
                   help="do not embed, project and cluster the samples after training")
    p.add_argument("--list-params", action="store_true", help="print the hyperparameters and exit")


def run_training(args, *, table: str) -> int:
    from ..jobs import CANCELLED, FINISHED, Job, load_checkpoint
    from ..methods.registry import get_finetuner, get_method
    from ..pipeline import apply_run, load_method_data, save_outputs

    cls = get_method(args.method) if table == "methods" else get_finetuner(args.method)
    if args.list_params:
        print(describe_params(cls))
        return 0
    project = open_project(args.project)
    params = parse_param_overrides(args.set, cls)
    resume = None
    run_id = None
    if args.resume is not None:
        run = project.run(args.resume)
        if not run["checkpoint"]:
            raise ValueError(f"run {args.resume} has no checkpoint to resume from")
        resume = load_checkpoint(run["checkpoint"])
        params = {**run["params"], **params}
        run_id = int(args.resume)
    method = cls(**params)
    data = load_method_data(project, method, dataset=args.dataset)
    from ._common import ProgressBar

    bar = ProgressBar(f"{args.method}")
    job = Job(method, data, project=project, resume=resume, on_progress=bar, name=cls.name or args.method,
              run_id=run_id)
    try:
        job.run()
    except KeyboardInterrupt:
        job.cancel()
    finally:
        bar.close()
    last = job.history[-1] if job.history else None
    print(f"run {job.run_id}: {job.status}"
          + (f" after epoch {last.epoch}, step {last.global_step}" if last else ""))
    if last:
        for k, v in {**last.losses, **last.metrics}.items():
            print(f"  {k}: {v:.5g}")
    if job.checkpoint_path:
        print(f"  checkpoint: {job.checkpoint_path}")
    if job.status == FINISHED:
        if not args.no_embed and hasattr(method, "transform"):
            summary = apply_run(project, method, job.run_id, dataset=args.dataset, data=data)
        else:
            summary = save_outputs(project, method, job.run_id)
        for line in summary:
            print(f"  {line}")
    return 0 if job.status in (FINISHED, CANCELLED) else 1
