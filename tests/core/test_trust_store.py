"""Project store under faults: two processes creating one project, two sessions labelling at
once, a read-only copy, a full disk (a file-size limit), orphan temp files, file modes."""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from core.io import import_source
from core.project import DiskFullError, Project, ReadOnlyError
from core.project.arrays import atomic_save_npy
from core.project.store import DB_NAME
from tests.conftest import DATA, ROOT, need

PY = sys.executable


def _create(path, barrier, out):
    try:
        barrier.wait(timeout=60)
        with Project.open_or_create(path) as p:
            out.put(("ok", p.schema_version, p.count()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}", 0))


def test_processes_creating_one_project_at_once_all_succeed(tmp_path):
    ctx = mp.get_context("spawn")
    for trial in range(2):
        path = tmp_path / f"p{trial}"
        n = 3
        barrier, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(path, barrier, out)) for _ in range(n)]
        for pr in procs:
            pr.start()
        results = [out.get(timeout=120) for _ in range(n)]
        for pr in procs:
            pr.join(timeout=60)
        assert all(r[0] == "ok" for r in results), results
        with Project.open(path) as p:
            assert p.meta("name") == f"p{trial}"
            assert len(p.query("SELECT * FROM meta WHERE key='schema_version'")) == 1


def _labeller(path, ids, label, rounds, step, out):
    """Label, undo, redo in lock-step with another process (``step``: a barrier between the
    phases, so both edits are in the history before either undoes); count any undo or redo
    that touched the other session's edit."""
    try:
        p = Project.open(path)
        step.wait(timeout=60)
        wrong = 0
        for r in range(rounds):
            sid = ids[r % len(ids)]
            had = label in p.labels([sid])[sid]
            assert p.set_label([sid], label, not had, author=label) == 1
            step.wait(timeout=60)
            undone = p.undo()
            if undone is None or undone.get("label") != label or undone["changes"][0][0] != sid:
                wrong += 1
            if (label in p.labels([sid])[sid]) != had:
                wrong += 1
            step.wait(timeout=60)
            redone = p.redo()
            if redone is None or redone.get("label") != label or redone["changes"][0][0] != sid:
                wrong += 1
            step.wait(timeout=60)
        p.close()
        out.put(("ok", wrong))
    except BaseException as exc:  # noqa: BLE001
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_sessions_labelling_at_once_never_undo_each_other(tmp_path):
    path = tmp_path / "proj"
    with Project.create(path) as p:
        assert import_source(p, need(DATA / "dicom_samples")).imported == 6
        ids = p.sample_ids()
    ctx = mp.get_context("spawn")
    step, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_labeller, args=(path, ids[:3], "alice", 10, step, out)),
             ctx.Process(target=_labeller, args=(path, ids[3:], "bob", 10, step, out))]
    for pr in procs:
        pr.start()
    results = [out.get(timeout=300) for _ in procs]
    for pr in procs:
        pr.join(timeout=60)
    assert results == [("ok", 0), ("ok", 0)]
    with Project.open(path) as p:   # both sessions ended: their edits are undoable again
        assert p.can_undo()
        assert p.history()["session"].nunique() == 2


def test_undo_skips_a_live_session_in_another_process_then_reaches_it_once_it_is_gone(tmp_path):
    path = tmp_path / "proj"
    with Project.create(path) as p:
        assert import_source(p, need(DATA / "dicom_samples" / "CT_small.dcm")).imported == 1
        sid = p.sample_ids()[0]
    me = Project.open(path)
    me.set_label([sid], "mine", author="alice")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.project import Project
        p = Project.open({str(path)!r})
        p.set_label([{sid!r}], "theirs", author="bob")
        print("ack", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ack"
        assert me.undo()["label"] == "mine"          # not bob's newer edit
        assert me.labels([sid])[sid] == ["theirs"]
        assert not me.can_undo()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert me.can_undo()                              # bob's process is gone: his edit is reachable
    assert me.undo()["label"] == "theirs"
    me.close()


# ------------------------------------------------------------------------------ read-only
def _as_reader_without_write_rights():
    """Root writes anywhere: drop the capabilities that let it, so the mode bits apply."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for root")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown"]


def test_read_only_project_opens_for_viewing_and_refuses_writes(tmp_path):
    path = tmp_path / "proj"
    with Project.create(path) as p:
        assert import_source(p, need(DATA / "dicom_samples")).imported == 6
        p.set_label(p.sample_ids()[:2], "artefact", author="alice")
    subprocess.run(["chmod", "-R", "a+rX,a-w", str(path)], check=True)
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        info = subprocess.run([*_as_reader_without_write_rights(), PY, "-m", "core.cli", "info",
                               str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert info.returncode == 0, info.stderr[-2000:]
        assert "samples: 6" in info.stdout and "read-only" in info.stdout
        assert "point clouds missing" not in info.stdout
        script = textwrap.dedent(f"""
            import numpy as np
            from core.project import Project, ReadOnlyError
            p = Project.open({str(path)!r})
            print("LABELS", sum(len(v) for v in p.labels().values()), p.read_only, p.can_undo())
            for name, write in [("label", lambda: p.set_label(p.sample_ids()[:1], "x")),
                                ("array", lambda: p.arrays.save("embeddings/x", np.zeros((1, 2)))),
                                ("undo", lambda: p.undo())]:
                try:
                    write()
                    print("WROTE", name)
                except ReadOnlyError as exc:
                    print("REFUSED", name, exc)
            p.close()
        """)
        r = subprocess.run([*_as_reader_without_write_rights(), PY, "-c", script], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "LABELS 2 True False" in r.stdout and "WROTE" not in r.stdout
        assert r.stdout.count(f"REFUSED") == 3 and f"read-only: {path}" in r.stdout
        assert "Traceback" not in r.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)


# ------------------------------------------------------------------------------ temp files
def test_open_removes_orphan_temp_files_but_not_a_write_in_progress(tmp_path):
    path = tmp_path / "proj"
    Project.create(path).close()
    orphan = path / "arrays" / "meshes" / ".abc-1234.npz.x8k2j1p0.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a mesh")
    live = path / "arrays" / ".points.npz.q9w8e7r6.tmp"
    script = textwrap.dedent(f"""
        import fcntl, sys, time
        fh = open({str(live)!r}, "wb")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(b"being written")
        fh.flush()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        for f in (orphan, live):
            os.utime(f, (1e9, 1e9))
        Project.open(path).close()
        assert not orphan.exists()      # its writer was killed: nothing holds its lock
        assert live.exists()            # a writer holds it
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    Project.open(path).close()
    assert not live.exists()
