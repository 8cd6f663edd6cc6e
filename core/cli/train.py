"""``latentmap train METHOD --project DIR``: run any registered method as a job with a progress bar."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    add_project_arg(p, required=False)  # --list-params needs no project
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable)")
    p.add_argument("--dataset", help="only the samples of this imported dataset")
    p.add_argument("--resume", metavar="RUN_ID", type=int,
                   help="continue a cancelled or interrupted run from its checkpoint")
    p.add_argument("--no-embed", action="store_true",
                   help="do not embed, project and cluster the samples after training")
    p.add_argument("--list-params", action="store_true", help="print the hyperparameters and exit")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train data-parallel on N local processes (torch.distributed.run; one per "
                        "GPU, or Gloo on the CPU); multi-node: launch with torchrun -m core.cli")


def run_training(args, *, table: str) -> int:
    from ..jobs import CANCELLED, FINISHED
    from ..methods.registry import get_finetuner, get_method

    cls = get_method(args.method) if table == "methods" else get_finetuner(args.method)
    if args.list_params:
        print(describe_params(cls))
        return 0
    if not args.project:
        sys.stderr.write(f"latentmap {'train' if table == 'methods' else 'finetune'}: "
                         "--project DIR is required (only --list-params runs without one)\n")
        return 2
    # -- distributed (issue 15): --nproc N re-launches this command on N ranks; under torchrun
    # every rank trains its share of each global batch, rank 0 alone records, reports and saves.
    from ..jobs import distributed
    if getattr(args, "nproc", 1) > 1 or distributed.launched():
        distributed.check_supported(args.method, "methods" if table == "methods" else "finetuners")
    if getattr(args, "nproc", 1) > 1 and not distributed.launched():
        return distributed.launch_local(args.nproc, distributed.rank_argv(
            args, "train" if table == "methods" else "finetune"))
    if distributed.launched():
        distributed.init(dict(parse_param_overrides(args.set, cls)).get("device", "auto"))
    # -- end distributed
    project = open_project(args.project)
    params = parse_param_overrides(args.set, cls)
    name = cls.name or args.method
    from ._common import ProgressBar
    from ..methods.base import Diverged
    from ..workflows.training import train_run

    bar = ProgressBar(f"{args.method}")
    main_rank = not distributed.launched() or distributed.is_main()
    try:
        # rank 0 alone shows progress; every rank gets Ctrl-C, any rank's cancel stops all
        run, job, _ = train_run(
            project, cls, params, dataset=args.dataset, resume=args.resume,
            embed=not args.no_embed, on_progress=bar if main_rank else None, on_job=cancel_on_signals,
            command="train" if table == "methods" else "finetune",
            name=name, apply=False)
    finally:
        bar.close()
    # every rank leaves the group together; rank 0 alone then embeds, projects and clusters
    distributed.shutdown()
    if not main_rank:
        return 0 if job.status in (FINISHED, CANCELLED) else 1
    report_job(job)
    if job.status != FINISHED:
        return 0 if job.status == CANCELLED else 1
    try:
        summary = run.apply(job, embed=not args.no_embed)
    except Diverged as exc:  # e.g. a collapsed embedding: said plainly, exit 1
        print(f"run {job.run_id}: {exc}")
        return 1
    for line in summary:
        print(f"  {line}")
    return 0


def _resumable_run(project, run_id: int, name: str, command: str) -> dict:
    """The run ``--resume`` names, checked (``core.workflows.training.resumable_run``)."""
    from ..workflows.training import resumable_run

    return resumable_run(project, run_id, name, command)


def cancel_on_signals(job):
    """Ctrl-C (SIGINT) and SIGTERM cancel ``job``: it stops after the current step, writes its
    checkpoint and is recorded ``cancelled``. A second Ctrl-C stops at once (the last checkpoint
    stays). Returns a function restoring the previous handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    hits = []

    def handler(signum, frame):
        hits.append(signum)
        if len(hits) == 1:
            print("\nstopping after this step and saving a checkpoint "
                  "(press Ctrl-C again to stop at once)...", file=sys.stderr, flush=True)
            job.cancel()
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def report_job(job) -> None:
    """What happened to a run, in words: status, where it stopped, why, what to do next."""
    from ..jobs import CANCELLED, DIVERGED, FAILED, FINISHED

    steps = [p for p in job.history if p.losses]
    last = steps[-1] if steps else (job.history[-1] if job.history else None)
    where = f" at epoch {last.epoch}, step {last.global_step}" if last else ""
    if job.status == FINISHED:
        print(f"run {job.run_id}: finished" + (f" after epoch {last.epoch}, step {last.global_step}" if last else ""))
    elif job.status == FAILED:
        err = job.error
        why = f"{type(err).__name__}: {err}" if err is not None else job.message
        print(f"run {job.run_id}: failed{where}: {why}")
    elif job.status == DIVERGED:
        print(f"run {job.run_id}: diverged: {job.message}")
    elif job.status == CANCELLED:
        print(f"run {job.run_id}: {job.message}")
    else:
        print(f"run {job.run_id}: {job.status}{where}")
    if last:
        for k, v in {**last.losses, **last.metrics}.items():
            try:
                print(f"  {k}: {float(v):.5g}")
            except (TypeError, ValueError):
                print(f"  {k}: {v}")
    if job.checkpoint_path and Path(job.checkpoint_path).is_file():
        print(f"  checkpoint: {job.checkpoint_path}")
    if job.status == FAILED and getattr(job, "error_log", None):
        print(f"  details for a bug report: {job.error_log}")
