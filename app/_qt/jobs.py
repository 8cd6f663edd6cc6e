"""The app's one background mechanism: ``core.jobs.Job`` on its own worker thread, every callback
re-emitted as a Qt signal, which Qt queues onto the GUI thread (signals cross threads safely,
widgets do not). Training runs a method's step generator; everything else (import and placing,
UMAP, re-clustering, evaluation) runs a ``core.workflows`` generator through ``StepTask``.
"""
from __future__ import annotations

import threading
import time

from qtpy.QtCore import QObject, Signal

from core.jobs import CANCELLED, DIVERGED, FAILED, FINISHED, Job, Progress
from core.workflows.tasks import StepTask, function_task  # noqa: F401 (the app's task adapters)


_RUNNING: set = set()  # every started QtJob until its job ends (cancel_running_jobs reaches them)
_RUNNING_LOCK = threading.Lock()


def running_jobs() -> list:
    """The QtJobs started and not yet ended, whichever widget started them."""
    with _RUNNING_LOCK:
        return [j for j in _RUNNING if not j.job.wait(0)]


def cancel_running_jobs(timeout: float = 10.0) -> bool:
    """Cancel every running QtJob and wait (at most ``timeout`` seconds in all) for their worker
    threads to end, so none is still inside a library (torch) when the interpreter exits (that
    aborted with "terminate called without an active exception"). True when all ended."""
    jobs = running_jobs()
    for j in jobs:
        j.cancel()
    deadline = time.monotonic() + timeout
    ok = True
    for j in jobs:
        ok = j.wait(max(0.0, deadline - time.monotonic())) and ok
        thread = j.job._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            ok = ok and not thread.is_alive()
    return ok


class QtJob(QObject):
    """``QtJob(method, data, **job_kwargs)``; connect the signals, then ``start()``.

    ``progress(Progress)``, ``status(str)`` ("running", "cancelling", ...), and ``done(str)``
    once with the final status; ``error`` / ``traceback`` hold what went wrong when failed.
    """

    progress = Signal(object)
    status = Signal(str)
    done = Signal(str)

    def __init__(self, method, data=None, parent=None, **job_kwargs):
        super().__init__(parent)
        self.job = Job(method, data, on_progress=self._on_progress, on_status=self._on_status,
                       **job_kwargs)

    # called on the worker thread: only emit. When the window that owned this bridge is gone
    # (closed mid-job), the signals have no receiver left and the job simply runs on.
    def _on_progress(self, p: Progress) -> None:
        try:
            self.progress.emit(p)
        except RuntimeError:
            pass

    def _on_status(self, s: str) -> None:
        if s in (FINISHED, CANCELLED, FAILED, DIVERGED):
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
        try:
            self.status.emit(s)
            if s in (FINISHED, CANCELLED, FAILED, DIVERGED):  # every status a job ends in
                self.done.emit(s)
        except RuntimeError:
            pass

    def start(self) -> "QtJob":
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self.job.start()
        return self

    def cancel(self) -> None:
        self.job.cancel()

    def wait(self, timeout=None) -> bool:
        return self.job.wait(timeout)

    @property
    def state(self) -> str:
        return self.job.status

    @property
    def error(self):
        return self.job.error

    @property
    def traceback(self) -> str:
        return self.job.traceback

    @property
    def method(self):
        return self.job.method


def run_steps(make_steps, *, name: str = "task", parent=None) -> QtJob:
    """A ``QtJob`` (not started) over a ``core.workflows`` step generator; its return value is
    ``qtjob.method.result`` once done."""
    return QtJob(StepTask(make_steps, name=name), None, parent=parent, name=name)
