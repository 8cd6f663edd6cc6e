"""Run a method's step generator off the calling thread with progress, cancel and checkpoints.

One code path for every front end: the CLI drives ``Job.run()`` with a progress bar, the app
calls ``Job.start()`` and forwards ``on_progress`` callbacks to Qt signals.

Every method gets the same guarantees from here: a step whose loss is NaN or infinite stops
the run as ``diverged`` (and a checkpoint is never overwritten with non-finite weights, so the
last good one stays); a cancel takes effect within one step and checkpoints the state reached;
the run row records the process training it, so a run whose process was killed is found
``interrupted`` the next time the project opens (``core.jobs.recovery``). Checkpoints are
recorded relative to the project folder and hold only what ``torch.load(weights_only=True)``
reads (``core.jobs.checkpoint``).
"""
from __future__ import annotations

import math
import threading
import traceback
from pathlib import Path
from typing import Callable

from ..project.arrays import atomic_write_bytes
from .checkpoint import load_checkpoint, relative_to_project, save_checkpoint  # noqa: F401 (re-exported)
from .progress import Progress
from .recovery import INTERRUPTED, claim_run, resume_command

PENDING, RUNNING, CANCELLING, CANCELLED, FINISHED, FAILED = (
    "pending", "running", "cancelling", "cancelled", "finished", "failed")
DIVERGED = "diverged"
COLLAPSED = "collapsed"  # finished, but its embedding collapsed (core.metrics.collapse)
#: statuses of a run that is never applied or made active
UNUSABLE = (FAILED, DIVERGED, COLLAPSED)
#: statuses whose run may be resumed from its checkpoint
RESUMABLE = (CANCELLED, INTERRUPTED, FAILED)


class Cancelled(Exception):
    pass


def _learning_rate(method):
    params = method.get_params() if hasattr(method, "get_params") else {}
    for key in ("lr", "learning_rate", "base_lr"):
        if key in params:
            return params[key]
    for key, value in params.items():
        if key.endswith("lr") and isinstance(value, (int, float)):
            return value
    return None


def _nonfinite_loss(progress: Progress):
    for name, value in (progress.losses or {}).items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            return name, v
    return None


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
        self.message = ""
        self.checkpoint_written = False
        self.error_log: Path | None = None

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

    def run(self, *, raise_errors: bool = True):
        """Run to the end in this thread. Re-raises the method's error unless ``raise_errors`` is
        False (a divergence is an outcome, never raised: ``status == "diverged"`` and
        ``message`` say why). Returns the method."""
        self._run_safely()
        if raise_errors and self.status == FAILED and self.error is not None:
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
        claim_run(self.project, self.run_id)
        if self.checkpoint_path is None:
            self.checkpoint_path = self.project.run_dir(self.run_id) / "checkpoint.pt"

    def _where(self) -> tuple[int | None, int | None]:
        last = next((p for p in reversed(self.history) if p.losses), None)
        return (last.epoch, last.step) if last else (None, None)

    def _checkpoint(self):
        if self.checkpoint_path is None or not hasattr(self.method, "state_dict"):
            return
        if not self._stepped:
            return  # cancelled before the first optimisation step: nothing to resume from
        state = self.method.state_dict()
        bad = _nonfinite_entries(state)
        if bad:  # never overwrite the last good checkpoint with NaN weights
            raise self._nonfinite_weights(bad, "at")
        save_checkpoint(self.checkpoint_path, state)
        self.checkpoint_written = True
        if self.project is not None and self.run_id is not None:
            self.project.update_run(self.run_id,
                                    checkpoint=relative_to_project(self.project.path, self.checkpoint_path))

    def _diverged_weights(self, exc: BaseException):
        """A ``Diverged`` when a step failed because the weights had become NaN or infinite."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)) or not self._stepped:
            return None
        try:
            bad = _nonfinite_entries(self.method.state_dict())
        except Exception:  # noqa: BLE001 - no state to judge: the original error stands
            return None
        if not bad:
            return None
        return self._nonfinite_weights(
            bad, "after", f"; the next step then failed with {type(exc).__name__}: {exc}")

    def _nonfinite_weights(self, bad, when: str, detail: str = ""):
        """The ``Diverged`` naming the non-finite tensors, where it happened and the likely cause."""
        from ..methods.base import Diverged, _fmt_lr

        epoch, step = self._where()
        where = f" {when} epoch {epoch}, step {step}" if epoch is not None else ""
        lr = _learning_rate(self.method)
        hint = (f"the learning rate {_fmt_lr(lr)} is likely too high; lower it and train again"
                if lr is not None else "the learning rate is likely too high; lower it and train again")
        which = f"{bad[0]}" if len(bad) == 1 else f"{len(bad)} tensors, e.g. {bad[0]}"
        return Diverged(f"the weights became NaN or infinite{where} ({which}{detail}): {hint}",
                        epoch=epoch, step=step)

    def _check_loss(self, progress: Progress) -> None:
        from ..methods.base import Diverged, divergence_message

        bad = _nonfinite_loss(progress)
        if bad is not None:
            name, value = bad
            what = "loss" if name == "loss" else f"loss {name!r}"
            raise Diverged(divergence_message(what, value, epoch=progress.epoch, step=progress.step,
                                              lr=_learning_rate(self.method)),
                           epoch=progress.epoch, step=progress.step)

    def _has_checkpoint(self) -> bool:
        return bool(self.checkpoint_path) and Path(self.checkpoint_path).is_file()

    def _cancel_message(self, interrupted_mid_step: bool = False) -> str:
        epoch, step = self._where()
        at = f" at epoch {epoch}, step {step}" if epoch is not None else " before the first step"
        if not self._has_checkpoint():
            return f"cancelled{at}; no checkpoint yet, so nothing to resume: train again"
        how = (" (stopped in the middle of a step; resumes from the last checkpoint)"
               if interrupted_mid_step else "")
        if self.project is not None and self.run_id is not None:
            return (f"cancelled{at}{how}; resume with: "
                    + resume_command(self.project, {"id": self.run_id, "method": self.name}))
        return f"cancelled{at}{how}; checkpoint {self.checkpoint_path}"

    def _run_safely(self) -> None:
        from ..methods.base import Diverged

        self._set_status(RUNNING if not self._cancel.is_set() else CANCELLING)
        gen = None
        outcome, message = FAILED, ""
        try:
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
                    self._check_loss(progress)
                    if progress.epoch_end:
                        self._checkpoint()
                    if self._cancel.is_set():
                        raise Cancelled()
                self._checkpoint()
                outcome = FINISHED
            except Cancelled:
                if gen is not None:
                    gen.close()
                self._checkpoint()
                outcome, message = CANCELLED, self._cancel_message()
            except KeyboardInterrupt:
                # a second Ctrl-C (or no signal handler): the step was cut short, its state may
                # be half updated; the last checkpoint stays as it is
                if gen is not None:
                    gen.close()
                outcome, message = CANCELLED, self._cancel_message(interrupted_mid_step=True)
        except Diverged as exc:
            self.error = exc
            self.traceback = traceback.format_exc()
            if gen is not None:
                gen.close()
            keep = (" The last good checkpoint is kept." if self._has_checkpoint() else "")
            outcome, message = DIVERGED, f"{exc}.{keep}" if not str(exc).endswith(".") else f"{exc}{keep}"
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, never swallowed
            self.error = exc
            self.traceback = traceback.format_exc()
            if gen is not None:
                try:
                    gen.close()
                except BaseException:  # noqa: BLE001 - the first error is the one reported
                    pass
            outcome, message = FAILED, f"{type(exc).__name__}: {exc}"
            diverged = self._diverged_weights(exc)
            if diverged is not None:  # e.g. a kernel that fails on NaN inputs: say what happened
                self.error = diverged
                keep = " The last good checkpoint is kept." if self._has_checkpoint() else ""
                outcome, message = DIVERGED, f"{diverged}.{keep}"
        try:
            self.message = message
            self._finish(outcome, message=message)
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
                if status == FAILED and self.traceback:
                    path = self.project.run_dir(self.run_id) / "error.txt"
                    text = self.traceback.encode()
                    atomic_write_bytes(path, lambda fh: fh.write(text))
                    self.error_log = path
            except Exception:  # the project may be closed by now; the run itself is done
                pass
        self._set_status(status)

    def _save_history(self) -> None:
        import pandas as pd

        if not self.history:
            return
        rows = []
        for p in self.history:
            if not p.losses and not p.metrics:
                continue  # a message ("loading data"), not a training step
            row = {"epoch": p.epoch, "step": p.step, "global_step": p.global_step,
                   "samples_per_s": p.samples_per_s}
            row.update({f"loss/{k}": v for k, v in p.losses.items()})
            row.update({f"metric/{k}": v for k, v in p.metrics.items()})
            rows.append(row)
        if not rows:
            return
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


def _nonfinite_entries(state) -> list[str]:
    from ..methods.base import nonfinite_entries

    return nonfinite_entries(state)
