"""Running a step generator in the caller's thread, for callers that do not need a ``Job``
(the CLI's one-shot commands, a method's inner passes, tests and benchmarks)."""
from __future__ import annotations

from typing import Callable, Generator


def run_to_end(steps: Generator, on_step: Callable | None = None):
    """Drive ``steps`` to its end and return its return value; ``on_step(item)`` sees every
    item it yields (a ``Progress`` for the engine's generators)."""
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(item)
