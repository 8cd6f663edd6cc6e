"""Background jobs: one runner for every method's step generator."""
from .checkpoint import (CheckpointError, load_checkpoint, load_run_checkpoint, run_checkpoint_path,
                         save_checkpoint)
from .job import (CANCELLED, CANCELLING, COLLAPSED, DIVERGED, FAILED, FINISHED, PENDING, RESUMABLE,
                  RUNNING, UNUSABLE, Cancelled, Job)
from .progress import Progress, RateMeter
from .recovery import INTERRUPTED, mark_interrupted_runs, resume_command

__all__ = ["Job", "Progress", "RateMeter", "Cancelled", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "load_run_checkpoint", "run_checkpoint_path", "mark_interrupted_runs",
           "resume_command", "PENDING", "RUNNING", "CANCELLING", "CANCELLED", "FINISHED", "FAILED",
           "DIVERGED", "COLLAPSED", "INTERRUPTED", "RESUMABLE", "UNUSABLE"]
