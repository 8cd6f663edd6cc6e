"""``latentmap finetune NAME --project DIR --set init_run=ID``: supervised stage from a trained run."""
from __future__ import annotations

import argparse

from .train import _add_run_options, run_training


def register(sub) -> None:
    from ..methods.registry import FINETUNERS

    p = sub.add_parser(
        "finetune", help="fine-tune a trained network with labels",
        description="Fine-tune a trained network with the project's labels: --set init_checkpoint=PATH (a run's checkpoint.pt; cluster-head also takes --set init_run=RUN_ID).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=sorted(FINETUNERS))
    _add_run_options(p)
    p.set_defaults(func=lambda a: run_training(a, table="finetuners"))
