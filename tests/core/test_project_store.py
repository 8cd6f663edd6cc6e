"""Project store: undo/redo across sessions, edits survive a killed process, schema guard,
WAL mode and atomic array writes."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core.io import import_source
from core.project import NewerSchemaError, Project, SCHEMA_VERSION
from core.project import arrays as arrays_mod
from core.project.store import DB_NAME
from tests.conftest import DATA, ROOT, need


@pytest.fixture()
def project_dir(tmp_path):
    """A project holding the six real DICOM samples."""
    path = tmp_path / "proj"
    with Project.create(path) as p:
        assert import_source(p, need(DATA / "dicom_samples")).imported == 6
    return path


def test_label_undo_redo_across_close_and_reopen(project_dir):
    with Project.open(project_dir) as p:
        a, b, c = p.sample_ids()[:3]
        p.set_label([a, b], "artefact", author="alice")
        p.set_label([c], "normal", author="bob")
        p.set_label([a], "artefact", False, author="alice")
    with Project.open(project_dir) as p:
        assert p.labels([a, b, c]) == {a: [], b: ["artefact"], c: ["normal"]}
        assert p.label_author(b, "artefact")[0] == "alice"
        assert p.undo()["label"] == "artefact"            # the removal from a is undone
        assert p.labels([a])[a] == ["artefact"]
    with Project.open(project_dir) as p:
        assert p.labels([a])[a] == ["artefact"]
        assert p.undo()["label"] == "normal"
        assert p.can_redo()
    with Project.open(project_dir) as p:
        assert p.labels([c])[c] == []
        p.redo()
        p.redo()
        assert p.labels([a, b, c]) == {a: [], b: ["artefact"], c: ["normal"]}
        assert not p.can_redo()
        while p.undo():
            pass
        assert p.labels([a, b, c]) == {a: [], b: [], c: []} and not p.can_undo()
    with Project.open(project_dir) as p:
        assert p.can_redo() and not p.can_undo()
        p.set_label([a], "new", author="carol")           # a new edit drops the redo branch
        assert not p.can_redo()


def test_dev_set_edit_undo_persists(project_dir):
    with Project.open(project_dir) as p:
        ids = p.sample_ids()[:2]
        p.set_dev(ids)
    with Project.open(project_dir) as p:
        assert p.dev_ids() == ids
        p.undo()
    with Project.open(project_dir) as p:
        assert p.dev_ids() == []


def test_label_edit_survives_a_killed_process(project_dir):
    """The edit is acknowledged, then the process is SIGKILLed: no clean close, no atexit."""
    with Project.open(project_dir) as p:
        sid = p.sample_ids()[0]
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.project import Project
        p = Project.open({str(project_dir)!r})
        p.set_label([{sid!r}], "checked-before-crash", author="worker")
        print("ack", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ack"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with Project.open(project_dir) as p:
        assert p.labels([sid])[sid] == ["checked-before-crash"]
        assert p.label_author(sid, "checked-before-crash")[0] == "worker"
        assert p.can_undo()
        p.undo()
        assert p.labels([sid])[sid] == []


def test_newer_schema_is_refused_with_a_clear_message(project_dir):
    with sqlite3.connect(project_dir / DB_NAME) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 7),))
    with pytest.raises(NewerSchemaError) as info:
        Project.open(project_dir)
    msg = str(info.value)
    assert str(project_dir) in msg and "newer LatentMap" in msg
    assert f"schema {SCHEMA_VERSION + 7}" in msg and "Update LatentMap" in msg


def test_not_a_project_is_a_clear_error(tmp_path):
    from core.project import ProjectError

    with pytest.raises(ProjectError, match="not a LatentMap project"):
        Project.open(tmp_path)


def test_wal_mode_is_on(project_dir):
    with Project.open(project_dir) as p:
        assert p.query("PRAGMA journal_mode")[0][0].lower() == "wal"
        assert p.schema_version == SCHEMA_VERSION
        p.set_label(p.sample_ids()[:1], "x")
        assert (project_dir / f"{DB_NAME}-wal").exists()


def test_array_writes_are_atomic(project_dir, monkeypatch):
    with Project.open(project_dir) as p:
        ids = p.sample_ids()
        good = np.arange(len(ids) * 3, dtype=np.float32).reshape(len(ids), 3)
        p.arrays.save("embeddings/run-0001", good, ids=ids)
        rel = p.save_sample_array("data/extra/a.npy", np.ones((4, 4)))

        def half_written_then_crash(fh, *args, **kwargs):
            fh.write(b"PK\x03\x04 partial")
            raise OSError("disk full (simulated)")

        monkeypatch.setattr(arrays_mod.np, "savez", half_written_then_crash)
        monkeypatch.setattr(arrays_mod.np, "save", half_written_then_crash)
        with pytest.raises(OSError, match="disk full"):
            p.arrays.save("embeddings/run-0001", good * 0, ids=ids)
        with pytest.raises(OSError, match="disk full"):
            p.save_sample_array(rel, np.zeros((4, 4)))
        monkeypatch.undo()

        loaded_ids, data = p.arrays.load("embeddings/run-0001")
        np.testing.assert_array_equal(data, good)
        assert list(loaded_ids) == ids
        np.testing.assert_array_equal(np.load(project_dir / rel), np.ones((4, 4)))
        leftovers = [f for f in project_dir.rglob("*") if f.name.endswith(".tmp")]
        assert leftovers == []
