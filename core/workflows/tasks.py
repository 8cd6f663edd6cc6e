"""Workflow generators as jobs: ``StepTask`` gives a workflow's step generator the
``steps(data, resume=)`` protocol of ``core.jobs.Job``, so the CLI and the app run training,
import, placing, UMAP, re-clustering and evaluation through the same runner (progress after
every step, cancel within one step)."""
from __future__ import annotations

from typing import Callable

from ..jobs.progress import Progress


class StepTask:
    """``StepTask(lambda: some_steps(project, ...), name="import")``; run it with
    ``Job(task, None)``. The generator's return value is kept in ``result``."""

    def __init__(self, make_steps: Callable, name: str = "task"):
        self.make_steps = make_steps
        self.name = name
        self.result = None

    def steps(self, data=None, *, resume=None):
        self.result = yield from self.make_steps()


def single_step(fn: Callable, message: str = ""):
    """A generator for work with no natural steps: one Progress before, the call, one after.
    Cancel takes effect before the call or after it, not inside."""
    yield Progress(step=0, global_step=0, n_epochs=1, steps_per_epoch=1, message=message)
    result = fn()
    yield Progress(step=1, global_step=1, n_epochs=1, steps_per_epoch=1, message=message)
    return result


def function_task(fn: Callable, name: str = "task", message: str = "") -> StepTask:
    """``StepTask`` for one blocking call."""
    return StepTask(lambda: single_step(fn, message or name), name=name)
