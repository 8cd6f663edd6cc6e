"""Qt bridge for ``core.jobs.Job``: the job runs on its own worker thread and every callback is
re-emitted as a Qt signal, which Qt queues onto the GUI thread (signals cross threads safely,
widgets do not).
"""
from __future__ import annotations

from qtpy.QtCore import QObject, Signal

from core.jobs import CANCELLED, FAILED, FINISHED, Job, Progress


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
        try:
            self.status.emit(s)
            if s in (FINISHED, CANCELLED, FAILED):
                self.done.emit(s)
        except RuntimeError:
            pass

    def start(self) -> "QtJob":
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


class FunctionTask:
    """Adapts ``fn(report, is_cancelled) -> result`` to the ``steps()`` protocol of a Job, so
    non-training work (import, re-clustering, UMAP) gets the same progress and cancel path.

    ``report(done, total, message)`` from inside ``fn`` becomes one ``Progress``; cancelling
    raises at the next report. The return value of ``fn`` is kept in ``result``.
    """

    name = "task"

    def __init__(self, fn, name: str = "task"):
        self.fn = fn
        self.name = name
        self.result = None

    def steps(self, data=None, *, resume=None):
        import queue
        import threading

        q: queue.Queue = queue.Queue()
        cancel = threading.Event()
        box: dict = {}

        def report(done=0, total=None, message=""):
            if cancel.is_set():
                raise _TaskCancelled()
            q.put(Progress(step=int(done), global_step=int(done), n_epochs=1 if total else None,
                           steps_per_epoch=int(total) if total else None, message=str(message)))

        def target():
            try:
                box["result"] = self.fn(report, cancel.is_set)
            except _TaskCancelled:
                box["cancelled"] = True
            except BaseException as exc:  # noqa: BLE001 - re-raised on the job thread
                box["error"] = exc
            finally:
                q.put(None)

        t = threading.Thread(target=target, daemon=True, name=f"task-{self.name}")
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                yield item  # the Job checks its cancel flag after each yield
        finally:
            # GeneratorExit (cancel) lands here: tell fn and wait for it to stop
            cancel.set()
            t.join()
        if "error" in box:
            raise box["error"]
        self.result = box.get("result")


class _TaskCancelled(Exception):
    pass
