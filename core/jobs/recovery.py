"""Runs whose process died: a run row records the process training it (pid, host, process start
time); when a project is opened, a ``running`` run whose process is gone (killed with SIGKILL,
out of memory, power cut) becomes ``interrupted``, resumable from its last checkpoint.

A run trained on another host is left alone (its process cannot be checked from here).
"""
from __future__ import annotations

import os
import socket
import time

__all__ = ["process_identity", "process_alive", "claim_run", "mark_interrupted_runs",
           "resume_command", "INTERRUPTED"]

INTERRUPTED = "interrupted"
#: statuses of a run that some process is (or was) working on
ACTIVE_STATUSES = ("running", "cancelling", "pending")
#: a run without a recorded process (written by an older LatentMap) counts as gone after this
_UNCLAIMED_GRACE_S = 120.0


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when unknown."""
    try:
        import psutil

        return float(psutil.Process(int(pid)).create_time())
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - no such process / no access
        return None
    try:  # Linux without psutil: start time in clock ticks since boot
        with open(f"/proc/{int(pid)}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_identity() -> dict:
    """This process: ``{"pid", "host", "process_started"}``."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_started": _start_time(pid) or time.time()}


def process_alive(pid, started=None) -> bool:
    """Whether process ``pid`` of this host still runs and is the same process (its start time
    matches ``started`` within 2 s; a reused pid is another process)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if started is None:
        return True
    actual = _start_time(pid)
    try:
        return actual is None or abs(actual - float(started)) < 2.0
    except (TypeError, ValueError):
        return True


def _has_columns(project) -> bool:
    try:
        cols = {r[1] for r in project.query("PRAGMA table_info(runs)")}
    except Exception:  # noqa: BLE001
        return False
    return {"pid", "host", "process_started"} <= cols


def claim_run(project, run_id: int) -> None:
    """Record this process as the one training ``run_id``."""
    if getattr(project, "read_only", False) or not _has_columns(project):
        return
    ident = process_identity()
    with project.transaction() as c:
        c.execute("UPDATE runs SET pid=?, host=?, process_started=? WHERE id=?",
                  (ident["pid"], ident["host"], ident["process_started"], int(run_id)))


def resume_command(project, run: dict) -> str:
    """``latentmap train METHOD --project P --resume N`` (``finetune`` for fine-tuning stages)."""
    import shlex

    from ..methods.registry import FINETUNERS, METHODS

    method = str(run.get("method", ""))
    command = "finetune" if method in FINETUNERS and method not in METHODS else "train"
    path = str(getattr(project, "path", project))
    try:
        path = str(os.path.abspath(path))
    except OSError:
        pass
    return f"latentmap {command} {method} --project {shlex.quote(path)} --resume {int(run['id'])}"


def _age_s(started_at) -> float:
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(str(started_at))
    except ValueError:
        return float("inf")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - t).total_seconds()


def mark_interrupted_runs(project) -> list[int]:
    """Mark ``running`` runs whose process is gone as ``interrupted``; returns their ids.

    Called when a project opens. Runs of another host, and of live processes, are left alone.
    """
    if getattr(project, "read_only", False):
        return []
    has_cols = _has_columns(project)
    cols = "id, method, status, started_at, checkpoint" + (", pid, host, process_started" if has_cols else "")
    marks = ",".join("?" * len(ACTIVE_STATUSES))
    try:
        rows = project.query(f"SELECT {cols} FROM runs WHERE status IN ({marks})", ACTIVE_STATUSES)
    except Exception:  # noqa: BLE001 - an old or damaged database: nothing to recover here
        return []
    host = socket.gethostname()
    gone = []
    for row in rows:
        rid, method, status, started_at, checkpoint = row[:5]
        pid, rhost, pstart = (row[5:8] if has_cols else (None, None, None))
        if pid is None:
            if _age_s(started_at) < _UNCLAIMED_GRACE_S:
                continue  # just created; its process is about to record itself
        elif rhost != host or process_alive(pid, pstart):
            continue
        gone.append((rid, method, checkpoint))
    done = []
    for rid, method, checkpoint in gone:
        if checkpoint:
            msg = ("interrupted: the process training it stopped without finishing (killed or "
                   "crashed); resume from its last checkpoint with: "
                   + resume_command(project, {"id": rid, "method": method}))
        else:
            msg = ("interrupted: the process training it stopped before the first checkpoint "
                   "(killed or crashed); nothing to resume, train again")
        try:
            with project.transaction() as c:
                c.execute(f"UPDATE runs SET status=?, message=? WHERE id=? AND status IN ({marks})",
                          (INTERRUPTED, msg, rid, *ACTIVE_STATUSES))
            done.append(int(rid))
        except Exception:  # noqa: BLE001 - e.g. read-only after all: the next writable open does it
            break
    return done
