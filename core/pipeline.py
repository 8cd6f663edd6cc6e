"""Moved to ``core.workflows``: kept so older imports keep working."""
from __future__ import annotations

from .project.accessors import run_name  # noqa: F401
from .workflows.apply import apply_run, save_outputs  # noqa: F401
from .workflows.runs import load_method_data  # noqa: F401

__all__ = ["apply_run", "load_method_data", "run_name", "save_outputs"]
