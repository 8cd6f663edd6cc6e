"""Run a method's step generator off the calling thread with progress, cancel and checkpoints.

One code path for every front end: the CLI drives ``Job.run()`` with a progress bar, the app
calls ``Job.start()`` and forwards ``on_progress`` callbacks to Qt signals.
"""
from __future__ import annotations

import io
import threading
import traceback
from pathlib import Path
from typing import Callable

from ..project.arrays import atomic_write_bytes
from .progress import Progress

PENDING, RUNNING, CANCELLING, CANCELLED, FINISHED, FAILED = (
    "pending", "running", "cancelling", "cancelled", "finished", "failed")


class Cancelled(Exception):
    pass


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    def write(fh):
        buf = io.BytesIO()
        torch.save(state, buf)
        fh.write(buf.getvalue())

    atomic_write_bytes(Path(path), write)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    import torch

    return torch.load(Path(path), map_location=map_location, weights_only=False)


class Job:
    """``Job(method, data)``: ``run()`` blocks, ``start()`` runs on a thread.

    The method provides ``steps(data, resume=None)`` (a generator yielding ``Progress`` after
    every step) and ``state_dict()``. Cancel is checked after every yielded step, so it takes
    effect within one step; the state reached is checkpointed so ``resume`` continues from it.
    When ``project`` is given, the run is recorded in its ``runs`` table.
    """

    def __init__(self, method, data, *, project=None, checkpoint_path=None, resume=None,
                 on_progress: Callable[[Progress], None] | None = None,
                 on_status: Callable[[str], None] | None = None, name: str | None = None,
                 run_id: int | None = None):
        self.method = method
        self.data = data
        self.project = project
        self.resume = resume
        self.on_progress = on_progress
        self.on_status = on_status
        self.name = name or getattr(method, "name", type(method).__name__)
        self.status = PENDING
        self.error: BaseException | None = None
        self.traceback = ""
        self.history: list[Progress] = []
        self.run_id = run_id
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._stepped = resume is not None

    # -------------------------------------------------------------- control
    def cancel(self) -> None:
        if self.status in (PENDING, RUNNING):
            self._cancel.set()
            self._set_status(CANCELLING)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def start(self) -> "Job":
        self._thread = threading.Thread(target=self._run_safely, name=f"job-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def run(self):
        """Run to the end in this thread; re-raises the method's error. Returns the method."""
        self._run_safely()
        if self.status == FAILED and self.error is not None:
            raise self.error
        return self.method

    # -------------------------------------------------------------- internals
    def _set_status(self, status: str) -> None:
        self.status = status
        if self.on_status:
            self.on_status(status)

    def _prepare_run(self):
        if self.project is None:
            return
        params = self.method.get_params() if hasattr(self.method, "get_params") else {}
        device = str(getattr(self.method, "device_", "") or "")
        if self.run_id is None:
            self.run_id = self.project.create_run(self.name, params, device=device)
        else:
            self.project.update_run(self.run_id, status=RUNNING)
        if self.checkpoint_path is None:
            self.checkpoint_path = self.project.run_dir(self.run_id) / "checkpoint.pt"

    def _checkpoint(self):
        if self.checkpoint_path is None or not hasattr(self.method, "state_dict"):
            return
        if not self._stepped:
            return  # cancelled before the first optimisation step: nothing to resume from
        save_checkpoint(self.checkpoint_path, self.method.state_dict())
        if self.project is not None and self.run_id is not None:
            self.project.update_run(self.run_id, checkpoint=self.checkpoint_path)

    def _run_safely(self) -> None:
        self._set_status(RUNNING if not self._cancel.is_set() else CANCELLING)
        gen = None
        try:
            self._prepare_run()
            resume = self.resume
            if isinstance(resume, (str, Path)):
                resume = load_checkpoint(resume)
            gen = self.method.steps(self.data, resume=resume)
            for progress in gen:
                self.history.append(progress)
                self._stepped = self._stepped or bool(progress.losses)
                if self.on_progress:
                    self.on_progress(progress)
                if progress.epoch_end:
                    self._checkpoint()
                if self._cancel.is_set():
                    raise Cancelled()
            self._checkpoint()
            self._finish(FINISHED)
        except Cancelled:
            if gen is not None:
                gen.close()
            self._checkpoint()
            self._finish(CANCELLED)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, never swallowed
            self.error = exc
            self.traceback = traceback.format_exc()
            if gen is not None:
                gen.close()
            self._finish(FAILED, message=f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def _finish(self, status: str, message: str = "") -> None:
        if self.project is not None and self.run_id is not None:
            last = self.history[-1] if self.history else None
            metrics = {"last_losses": last.losses if last else {},
                       "last_metrics": last.metrics if last else {},
                       "epoch": last.epoch if last else 0,
                       "global_step": last.global_step if last else 0}
            try:
                self.project.update_run(self.run_id, status=status, metrics=metrics,
                                        message=message, finished=True)
                self._save_history()
            except Exception:  # the project may be closed by now; the run itself is done
                pass
        self._set_status(status)

    def _save_history(self) -> None:
        import pandas as pd

        if not self.history:
            return
        rows = []
        for p in self.history:
            row = {"epoch": p.epoch, "step": p.step, "global_step": p.global_step,
                   "samples_per_s": p.samples_per_s}
            row.update({f"loss/{k}": v for k, v in p.losses.items()})
            row.update({f"metric/{k}": v for k, v in p.metrics.items()})
            rows.append(row)
        path = self.project.run_dir(self.run_id) / "history.csv"
        df = pd.DataFrame(rows)
        if self.resume is not None and path.exists():
            # a resumed run appends: the steps before the cancel stay (the overlap, if the
            # checkpoint predates the last recorded step, is replaced by the new rows)
            try:
                old = pd.read_csv(path)
                if "global_step" in old:
                    old = old[old["global_step"] < df["global_step"].min()]
                df = pd.concat([old, df], ignore_index=True)
            except (OSError, ValueError, pd.errors.ParserError):
                pass  # an unreadable old history is replaced, the new rows are kept
        buf = df.to_csv(index=False).encode()
        atomic_write_bytes(path, lambda fh: fh.write(buf))
