"""Background jobs: one runner for every method's step generator."""
from .job import (CANCELLED, CANCELLING, FAILED, FINISHED, PENDING, RUNNING, Cancelled, Job,
                  load_checkpoint, save_checkpoint)
from .progress import Progress, RateMeter

__all__ = ["Job", "Progress", "RateMeter", "Cancelled", "save_checkpoint", "load_checkpoint",
           "PENDING", "RUNNING", "CANCELLING", "CANCELLED", "FINISHED", "FAILED"]
