"""``latentmap project copy SRC DST``: move a project between SQLite and PostgreSQL, losslessly.

Every table is copied row for row with its keys (samples in their insertion order, label,
history and run ids kept, so undo/redo, run folders and clusterings stay valid), and the files
of the project folder (arrays, runs, sample data) are copied when the destination's folder is
another one. The destination must not hold a project yet.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .store import DB_NAME, Project, ProjectError

#: parents before children (foreign keys)
ORDER = ["meta", "samples", "label_set", "labels", "sessions", "history", "runs", "clusterings",
         "cluster_assignments", "cluster_labels", "session_state"]
#: files of a SQLite project folder that are the database, not project data
_DB_FILES = {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", "project.toml"}


def tables() -> list[str]:
    from .pg import TABLES

    extra = [t for t in TABLES if t not in ORDER]
    return [t for t in ORDER if t in TABLES] + extra


def table_columns(project: Project, table: str) -> list[str]:
    return [r[1] for r in project.query(f"PRAGMA table_info({table})")]


def dump(project: Project) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table as (columns, rows), in a stable order (samples by insertion, others by key)."""
    from .pg import PRIMARY_KEYS

    out = {}
    for t in tables():
        cols = table_columns(project, t)
        if not cols:
            continue
        order = "rowid" if t == "samples" else ", ".join(PRIMARY_KEYS.get(t) or cols)
        out[t] = cols, [tuple(r) for r in project.query(
            f"SELECT {', '.join(cols)} FROM {t} ORDER BY {order}")]
    return out


def copy_project(src, dst, *, copy_files: bool = True) -> dict:
    """Copy project ``src`` to ``dst`` (each a folder, a postgresql:// URL or a folder with a
    project.toml); returns {table: rows copied}."""
    with Project.open(src, read_only=True) as s:
        data = dump(s)
        src_folder = Path(s.path)
    d = Project.create(dst)
    try:
        if d.count() or len(d.runs()) or d.label_names():
            raise ProjectError(f"{dst}: the destination already holds a project")
        counts = {}
        with d.transaction() as c:
            c.execute("DELETE FROM meta")
            for t, (cols, rows) in data.items():
                have = set(table_columns(d, t))
                keep = [i for i, col in enumerate(cols) if col in have]
                names = [cols[i] for i in keep]
                if rows:
                    c.executemany(
                        f"INSERT INTO {t} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        [tuple(r[i] for i in keep) for r in rows])
                counts[t] = len(rows)
        reset = getattr(d._conn, "reset_identities", None)
        if reset:
            reset()
        if copy_files and Path(d.path).resolve() != src_folder.resolve():
            _copy_folder(src_folder, Path(d.path))
    finally:
        d.close()
    return counts


def _copy_folder(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in _DB_FILES:
            continue
        target = dst / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


