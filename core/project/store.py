"""A LatentMap project: one folder, one SQLite database (WAL), array files beside it.

Every user edit (labels, development-set membership, cluster label overrides) is one SQLite
transaction and one row of the undo history, so a killed process loses nothing that was
acknowledged. Undo/redo reach the edits of this session and of ended ones (closed, or their
process gone), never those of another session editing at the same time.

A project on a read-only folder (an archive, a shared drive) opens for viewing; a write then
raises ``ReadOnlyError`` ("read-only: <path>"). A full disk raises ``DiskFullError`` naming the
file, after the transaction has been rolled back.
"""
from __future__ import annotations

import getpass
import json
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .accessors import RunArrays
from .arrays import ArrayStore, atomic_save_npy, remove_orphan_temps
from .faults import (DiskFullError, NewerSchemaError, ProjectError, ReadOnlyError,  # noqa: F401
                     as_write_error, make_dirs, read_only, set_file_mode)
from .faults import read_only as read_only_error
from .schema import ADDED_COLUMNS, MIGRATIONS, SCHEMA, SCHEMA_VERSION, statements

DB_NAME = "project.sqlite"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


@dataclass
class SampleRecord:
    """What an importer hands to the store for one sample."""

    id: str
    dataset: str = ""
    source_path: str = ""
    modality: str = ""
    kind: str = ""
    split: str = ""
    shape: Sequence[int] = ()
    geometry: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    data_file: str | None = None
    data_index: int | None = None
    mask_file: str | None = None
    mask_index: int | None = None
    labels: Sequence[str] = ()


_MISSING = object()


def _json_column(texts) -> list:
    """``json.loads`` of each text, a text repeated across rows parsed once (58,830 images of
    one shape and an empty geometry cost two parses, not 117,660). Every row still gets its own
    object: flat containers (of scalars) are copied, nested ones parsed again."""
    memo: dict = {}
    out = []
    for t in texts:
        hit = memo.get(t, _MISSING)
        if hit is _MISSING:
            v = json.loads(t)
            items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
            memo[t] = (v, not any(isinstance(x, (dict, list)) for x in items))
            out.append(v)
            continue
        v, flat = hit
        out.append((v.copy() if isinstance(v, (dict, list)) else v) if flat else json.loads(t))
    return out


class Project(RunArrays):
    """Open with ``Project.open(path)`` or create with ``Project.create(path)``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, read_only: bool = False):
        self.path = Path(path)
        self._conn = conn
        self._lock = threading.RLock()
        self.read_only = bool(read_only)
        self.arrays = ArrayStore(self.path / "arrays", read_only=self.read_only)
        # Undo scope: one session per open Project; registered with the first undoable edit.
        self.session = uuid.uuid4().hex
        self._session_registered = False

    # ------------------------------------------------------------------ open/create
    @classmethod
    def create(cls, path, *, name: str | None = None, exist_ok: bool = False) -> "Project":
        """Create a project (schema in one transaction, so two processes creating the same
        project at once both succeed); with ``exist_ok`` open the one already there."""
        from . import pg  # PostgreSQL back end (issue 15): a postgresql:// URL or project.toml
        if pg.location(path) is not None:
            return pg.open_project(cls, path, create=True, name=name, exist_ok=exist_ok)
        path = Path(path)
        db = path / DB_NAME
        if db.exists() and not exist_ok:
            raise ProjectError(f"{path}: a project already exists here")
        try:
            make_dirs(path)
        except OSError as exc:
            err = as_write_error(exc, path)
            if isinstance(err, ReadOnlyError):
                err = read_only_error(path, exc.strerror or "", hint="choose a writable folder for the project")
            raise (err or ProjectError(f"{path}: cannot create ({exc})")) from exc
        return cls._open(path, create=True, name=name or path.name, exist_ok=exist_ok)

    @classmethod
    def open(cls, path, *, read_only: bool | None = None) -> "Project":
        """Open a project; ``read_only=None`` opens read-only only where it cannot be written."""
        from . import pg  # PostgreSQL back end (issue 15): a postgresql:// URL or project.toml
        if pg.location(path) is not None:
            return pg.open_project(cls, path, create=False, read_only=read_only)
        path = Path(path)
        if not (path / DB_NAME).exists():
            raise ProjectError(f"{path}: not a LatentMap project (no {DB_NAME})")
        return cls._open(path, create=False, read_only=read_only)

    @classmethod
    def open_or_create(cls, path, **kw) -> "Project":
        return cls.create(path, exist_ok=True, **kw)

    @classmethod
    def _open(cls, path: Path, *, create: bool, name: str = "", exist_ok: bool = True,
              read_only: bool | None = None) -> "Project":
        db = path / DB_NAME
        new_db = not db.exists()
        if read_only is None:
            read_only = not create and not _writable(path, db)
        if create and not db.exists() and not os.access(path, os.W_OK):
            raise read_only_error(path, "no permission to write in this folder",
                                  hint="choose a writable folder for the project")
        if read_only:
            conn = cls._connect_read_only(db)
        else:
            conn = None
            try:
                conn = cls._connect(db)
                cls._prepare(conn, db, create=create, name=name, exist_ok=exist_ok)
            except BaseException as exc:
                if conn is not None:
                    conn.close()
                if not isinstance(exc, sqlite3.Error):
                    raise
                err = as_write_error(exc, db)
                if isinstance(err, ReadOnlyError) and not create:
                    return cls._open(path, create=False, read_only=True)
                if err is not None:
                    raise err from exc
                raise ProjectError(f"{db}: cannot read the project database ({exc})") from exc
            if new_db:
                set_file_mode(db)   # a new database only: a lab's chosen modes are kept
        project = cls(path, conn, read_only=read_only)
        if not read_only:
            remove_orphan_temps(path)   # temp files of writes that a killed process left
            from ..jobs.recovery import mark_interrupted_runs

            mark_interrupted_runs(project)  # 'running' runs whose process is gone
        return project

    @staticmethod
    def _prepare(conn, db: Path, *, create: bool, name: str, exist_ok: bool) -> None:
        """Check the schema version; create the schema or upgrade it in one ``BEGIN IMMEDIATE``
        transaction (idempotent: a second creator waits, then finds everything there)."""
        state = _schema_state(conn)
        if state == "current":
            return
        if state == "missing" and not create:
            conn.execute("BEGIN IMMEDIATE")     # a creator may hold it: wait for its commit
            state = _schema_state(conn)
            conn.execute("ROLLBACK")
            if state == "missing":
                raise ProjectError(f"{db.parent}: not a LatentMap project (empty {DB_NAME})")
            if state == "current":
                return
        conn.execute("BEGIN IMMEDIATE")
        try:
            state = _schema_state(conn)     # another process may have done it meanwhile
            if state == "missing":
                for stmt in statements(SCHEMA):
                    conn.execute(stmt)
                for key, value in (("schema_version", str(SCHEMA_VERSION)), ("name", name),
                                   ("created_at", now())):
                    conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            elif state != "current":
                version = int(state)
                if version > SCHEMA_VERSION:
                    raise NewerSchemaError(
                        f"{db.parent}: this project was written by a newer LatentMap (schema "
                        f"{version}; this version reads up to {SCHEMA_VERSION}). Update LatentMap "
                        "to open it.")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in statements(MIGRATIONS.get(v, "")):
                        conn.execute(stmt)
                for stmt in statements(SCHEMA):
                    conn.execute(stmt)
                _add_columns(conn)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves so every edit is an explicit transaction.
        conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            _switch_to_wal(conn, db)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _connect_read_only(db: Path) -> sqlite3.Connection:
        """``mode=ro``; where SQLite cannot even create its WAL index (a read-only folder with
        no ``-shm`` file), ``immutable=1``: nobody can change the files there anyway."""
        from urllib.parse import quote

        uri = "file:" + quote(str(db.resolve()))
        last = None
        for opts in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(uri + opts, uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            except sqlite3.Error as exc:
                last = exc
                continue
            try:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.Error as exc:
                conn.close()
                last = exc
                continue
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                conn.close()
                raise NewerSchemaError(
                    f"{db.parent}: this project was written by a newer LatentMap (schema {version}; "
                    f"this version reads up to {SCHEMA_VERSION}). Update LatentMap to open it.")
            return conn
        raise ProjectError(f"{db}: cannot read the project database ({last})")

    def close(self) -> None:
        with self._lock:
            if self._session_registered and not self.read_only:
                try:
                    self._conn.execute("UPDATE sessions SET closed_at=? WHERE id=?", (now(), self.session))
                except sqlite3.Error:
                    pass  # closing must not fail (a full disk, a lost drive): the pid check covers it
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def name(self) -> str:
        return self.meta("name") or self.path.name

    @property
    def schema_version(self) -> int:
        return int(self.meta("schema_version"))

    def meta(self, key: str, default=None):
        row = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return row[0][0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    # ------------------------------------------------------------------ sql helpers
    @contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on any exception.

        The cause is what is raised: SQLite rolls a transaction back by itself after some
        errors (a full disk), so ROLLBACK is issued only while a transaction is open. A full
        disk or a read-only project raises ``DiskFullError`` / ``ReadOnlyError``."""
        db = self.path / DB_NAME
        if self.read_only:
            raise read_only(self.path)
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        try:
                            c.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            except sqlite3.Error as exc:
                err = as_write_error(exc, db)
                if err is None:
                    raise
                raise err from exc

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ samples
    def add_samples(self, records: Iterable[SampleRecord], *, author: str = "import") -> int:
        """Insert (or replace) samples and their import labels in one transaction."""
        records = list(records)
        t = now()
        rows = [
            (r.id, r.dataset, str(r.source_path), r.modality, r.kind, r.split,
             json.dumps([int(s) for s in r.shape]), json.dumps(_jsonable(r.geometry)),
             json.dumps(_jsonable(r.metadata)), r.data_file,
             None if r.data_index is None else int(r.data_index),
             r.mask_file, None if r.mask_index is None else int(r.mask_index), t)
            for r in records
        ]
        with self.transaction() as c:
            # An upsert, not INSERT OR REPLACE: replacing would delete the sample's user labels
            # (ON DELETE CASCADE) and reset its development-set flag on a re-import.
            c.executemany(
                "INSERT INTO samples (id, dataset, source_path, modality, kind, split, shape, geometry,"
                " metadata, data_file, data_index, mask_file, mask_index, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " dataset=excluded.dataset, source_path=excluded.source_path, modality=excluded.modality,"
                " kind=excluded.kind, split=excluded.split, shape=excluded.shape, geometry=excluded.geometry,"
                " metadata=excluded.metadata, data_file=excluded.data_file, data_index=excluded.data_index,"
                " mask_file=excluded.mask_file, mask_index=excluded.mask_index", rows)
            label_ids = {}
            label_rows = []
            for r in records:
                for name in r.labels:
                    if name not in label_ids:
                        label_ids[name] = self._label_id(c, name, create=True)
                    label_rows.append((r.id, label_ids[name], author, t))
            c.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?)", label_rows)
        return len(records)

    def samples(self, *, split=None, dataset=None, kind=None, modality=None, ids=None) -> pd.DataFrame:
        """Samples as a DataFrame (one row per sample, JSON columns decoded), in insertion order."""
        import pandas as pd  # lazy: paths that read no table (query, app start-up) skip its import
        where, params = [], []
        for col, val in (("split", split), ("dataset", dataset), ("kind", kind), ("modality", modality)):
            if val is not None:
                where.append(f"{col}=?")
                params.append(val)
        sql = "SELECT * FROM samples"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid"
        with self._lock:
            df = pd.read_sql_query(sql, self._conn, params=params)
        for col in ("shape", "geometry", "metadata"):
            df[col] = _json_column(df[col].tolist())
        df["dev"] = df["dev"].astype(bool)
        if ids is not None:
            df = df.set_index("id").loc[list(ids)].reset_index()
        return df

    def sample_rows(self, ids=None) -> list[dict]:
        """Samples as dicts (JSON columns decoded, ``dev`` a bool, NULL None), like
        :meth:`samples` but read row by row without pandas: the ``ids`` given (in that order,
        each once, unknown ones left out; only those rows are read) or every sample."""
        if ids is None:
            chunks = [None]
        else:
            wanted = list(dict.fromkeys(str(s) for s in ids))
            chunks = [wanted[i:i + 900] for i in range(0, len(wanted), 900)]
        found: dict[str, dict] = {}
        rows: list[dict] = []
        with self._lock:
            for chunk in chunks:
                if chunk is None:
                    cur = self._conn.execute("SELECT * FROM samples ORDER BY rowid")
                else:
                    cur = self._conn.execute(f"SELECT * FROM samples WHERE id IN ({','.join('?' * len(chunk))})",
                                             chunk)
                names = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    d = dict(zip(names, row))
                    for col in ("shape", "geometry", "metadata"):
                        d[col] = json.loads(d[col])
                    d["dev"] = bool(d["dev"])
                    if chunk is None:
                        rows.append(d)
                    else:
                        found[d["id"]] = d
        return rows if ids is None else [found[s] for s in wanted if s in found]

    def sample(self, sample_id: str) -> dict:
        df = self.samples(ids=[sample_id]) if self.has_sample(sample_id) else None
        if df is None or df.empty:
            raise KeyError(f"no sample {sample_id!r} in {self.path}")
        return df.iloc[0].to_dict()

    def has_sample(self, sample_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM samples WHERE id=?", (sample_id,)))

    def sample_ids(self, **filters) -> list[str]:
        return self.samples(**filters)["id"].tolist()

    def count(self) -> int:
        return self.query("SELECT COUNT(*) FROM samples")[0][0]

    def data_path(self, rel: str) -> Path:
        return self.path / rel

    def save_sample_array(self, rel: str, array: np.ndarray) -> str:
        """Write one array file for samples (atomically); returns the relative path to record."""
        if self.read_only:
            raise read_only(self.path / rel)
        atomic_save_npy(self.path / rel, array)
        return rel

    def load_sample_array(self, sample_id: str, *, mask: bool = False) -> np.ndarray:
        """The pixel/voxel array of a sample (or its associated mask/label map)."""
        row = self.query(
            "SELECT data_file, data_index, mask_file, mask_index FROM samples WHERE id=?",
            (sample_id,),
        )
        if not row:
            raise KeyError(f"no sample {sample_id!r}")
        f, i = (row[0][2], row[0][3]) if mask else (row[0][0], row[0][1])
        if f is None:
            raise KeyError(f"sample {sample_id!r} has no {'mask' if mask else 'array'}")
        return _load_stacked(self.path / f, i)

    def load_stack(self, sample_ids: Sequence[str], *, mask: bool = False) -> np.ndarray:
        """Arrays of many same-shaped samples as one stacked array (fast path for stacked files)."""
        col_f, col_i = ("mask_file", "mask_index") if mask else ("data_file", "data_index")
        rows = {}
        for chunk in _chunks(list(sample_ids), 900):
            q = ",".join("?" * len(chunk))
            for sid, f, i in self.query(
                f"SELECT id, {col_f}, {col_i} FROM samples WHERE id IN ({q})", chunk
            ):
                rows[sid] = (f, i)
        missing = [s for s in sample_ids if s not in rows or rows[s][0] is None]
        if missing:
            raise KeyError(f"{len(missing)} samples have no array, e.g. {missing[:3]}")
        out, cache = [], {}
        for s in sample_ids:
            f, i = rows[s]
            if f not in cache:
                cache[f] = np.load(self.path / f, mmap_mode="r", allow_pickle=False)
            arr = cache[f]
            out.append(np.asarray(arr[i]) if i is not None else np.asarray(arr))
        return np.stack(out) if out else np.empty((0,))

    # ------------------------------------------------------------------ label set
    def label_names(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM label_set ORDER BY position, id")]

    def label_colors(self) -> dict[str, str | None]:
        return dict(self.query("SELECT name, color FROM label_set ORDER BY position, id"))

    def add_label(self, name: str, color: str | None = None) -> None:
        with self.transaction() as c:
            self._label_id(c, name, create=True, color=color)

    def rename_label(self, old: str, new: str) -> None:
        if not new.strip():
            raise ProjectError("a label name cannot be empty")
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM label_set WHERE name=?", (new,)).fetchone():
                raise ProjectError(f"a label named {new!r} already exists")
            if not c.execute("UPDATE label_set SET name=? WHERE name=?", (new, old)).rowcount:
                raise ProjectError(f"no label named {old!r}")

    def set_label_color(self, name: str, color: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE label_set SET color=? WHERE name=?", (color, name))

    def remove_label(self, name: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM label_set WHERE name=?", (name,))

    def _label_id(self, c, name: str, *, create=False, color=None) -> int:
        row = c.execute("SELECT id FROM label_set WHERE name=?", (name,)).fetchone()
        if row:
            return row[0]
        if not create:
            raise ProjectError(f"no label named {name!r}")
        pos = c.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM label_set").fetchone()[0]
        return c.execute(
            "INSERT INTO label_set (name, color, position) VALUES (?,?,?)", (name, color, pos)
        ).lastrowid

    # ------------------------------------------------------------------ labels
    def labels(self, sample_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """sample id -> label names (every sample of ``sample_ids`` present, maybe empty)."""
        rows = self.query(
            "SELECT l.sample_id, s.name FROM labels l JOIN label_set s ON s.id=l.label_id"
            " ORDER BY s.position, s.id"
        )
        out: dict[str, list[str]] = {} if sample_ids is None else {s: [] for s in sample_ids}
        for sid, name in rows:
            if sample_ids is None or sid in out:
                out.setdefault(sid, []).append(name)
        return out

    def label_matrix(self, sample_ids: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """N x C multi-hot float32 matrix in the order of ``names`` (default: the label set)."""
        names = list(names) if names is not None else self.label_names()
        col = {n: j for j, n in enumerate(names)}
        row = {s: i for i, s in enumerate(sample_ids)}
        out = np.zeros((len(sample_ids), len(names)), dtype=np.float32)
        for sid, name in self.query(
            "SELECT l.sample_id, s.name FROM labels l JOIN label_set s ON s.id=l.label_id"
        ):
            if sid in row and name in col:
                out[row[sid], col[name]] = 1.0
        return out

    def labels_in_use(self, sample_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """``(names, N x C matrix)`` over only the labels some of ``sample_ids`` carry, in
        label-set order: a project can hold several cohorts, each with its own label set."""
        names = self.label_names()
        y = self.label_matrix(sample_ids, names)
        used = y.any(0)
        return [n for n, u in zip(names, used) if u], y[:, used]

    def label_author(self, sample_id: str, label: str):
        r = self.query(
            "SELECT l.author, l.time FROM labels l JOIN label_set s ON s.id=l.label_id"
            " WHERE l.sample_id=? AND s.name=?", (sample_id, label))
        return r[0] if r else None

    def set_label(self, sample_ids: Sequence[str], label: str, value: bool = True, *, author=None) -> int:
        """Add (value=True) or remove a label on samples; one undoable action. Returns #changed."""
        author = author or default_author()
        t = now()
        sample_ids = list(dict.fromkeys(sample_ids))
        with self.transaction() as c:
            lid = self._label_id(c, label, create=value)
            changes = []
            for sid in sample_ids:
                has = c.execute(
                    "SELECT 1 FROM labels WHERE sample_id=? AND label_id=?", (sid, lid)
                ).fetchone() is not None
                if has == bool(value):
                    continue
                if not c.execute("SELECT 1 FROM samples WHERE id=?", (sid,)).fetchone():
                    raise ProjectError(f"no sample {sid!r}")
                changes.append([sid, int(has), int(bool(value))])
            self._apply_label_changes(c, lid, changes, author, t, forward=True)
            if changes:
                self._push_history(c, "label", {"label": label, "changes": changes}, author, t)
        return len(changes)

    def replace_label(self, sample_ids: Sequence[str], label: str, *, author=None) -> int:
        """Give each sample ``label`` as its only label (single-label data: one key relabels);
        samples that already have it keep it. One undoable action. Returns #samples changed."""
        author = author or default_author()
        t = now()
        sample_ids = list(dict.fromkeys(sample_ids))
        with self.transaction() as c:
            lid = self._label_id(c, label, create=True)
            names = {r[0]: r[1] for r in c.execute("SELECT id, name FROM label_set")}
            changes = []
            for sid in sample_ids:
                if not c.execute("SELECT 1 FROM samples WHERE id=?", (sid,)).fetchone():
                    raise ProjectError(f"no sample {sid!r}")
                old = sorted(r[0] for r in c.execute("SELECT label_id FROM labels WHERE sample_id=?", (sid,)))
                if old == [lid]:
                    continue
                changes.append([sid, [names[i] for i in old], [label]])
            self._apply_relabel(c, changes, author, t, forward=True)
            if changes:
                self._push_history(c, "relabel", {"label": label, "changes": changes}, author, t)
        return len(changes)

    def _apply_relabel(self, c, changes, author, t, *, forward: bool) -> None:
        for sid, old, new in changes:
            target = new if forward else old
            c.execute("DELETE FROM labels WHERE sample_id=?", (sid,))
            for name in target:
                lid = self._label_id(c, name, create=True)
                c.execute("INSERT OR REPLACE INTO labels VALUES (?,?,?,?)", (sid, lid, author, t))

    def toggle_label(self, sample_ids: Sequence[str], label: str, *, author=None) -> int:
        """Set the label on all of ``sample_ids`` unless all already have it, then remove it."""
        have = self.labels(sample_ids)
        value = not all(label in have.get(s, []) for s in sample_ids)
        return self.set_label(sample_ids, label, value, author=author)

    def _apply_label_changes(self, c, lid, changes, author, t, *, forward: bool):
        for sid, old, new in changes:
            target = new if forward else old
            if target:
                c.execute("INSERT OR REPLACE INTO labels VALUES (?,?,?,?)", (sid, lid, author, t))
            else:
                c.execute("DELETE FROM labels WHERE sample_id=? AND label_id=?", (sid, lid))

    # ------------------------------------------------------------------ development set
    def set_dev(self, sample_ids: Sequence[str], value: bool = True, *, author=None) -> int:
        author = author or default_author()
        t = now()
        with self.transaction() as c:
            changes = []
            for sid in dict.fromkeys(sample_ids):
                row = c.execute("SELECT dev FROM samples WHERE id=?", (sid,)).fetchone()
                if row is None:
                    raise ProjectError(f"no sample {sid!r}")
                if bool(row[0]) != bool(value):
                    changes.append([sid, int(row[0]), int(bool(value))])
                    c.execute("UPDATE samples SET dev=? WHERE id=?", (int(bool(value)), sid))
            if changes:
                self._push_history(c, "dev", {"changes": changes}, author, t)
        return len(changes)

    def dev_ids(self) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM samples WHERE dev=1 ORDER BY rowid")]

    # ------------------------------------------------------------------ undo / redo
    def _push_history(self, c, kind: str, payload: dict, author: str, t: str) -> None:
        if not self._session_registered:
            c.execute("INSERT OR IGNORE INTO sessions (id, author, host, pid, opened_at)"
                      " VALUES (?,?,?,?,?)", (self.session, author, _HOST, os.getpid(), t))
            self._session_registered = True
        # A new action discards the redo branch (of the edits this session may redo).
        others, params = self._other_live_sessions(c)
        c.execute(f"DELETE FROM history WHERE undone=1{others}", params)
        c.execute(
            "INSERT INTO history (kind, payload, author, time, session) VALUES (?,?,?,?,?)",
            (kind, json.dumps(payload), author, t, self.session),
        )

    def _other_live_sessions(self, c=None) -> tuple[str, list]:
        """SQL condition (`` AND session NOT IN (...)``) leaving out the edits of sessions that
        are editing now in another process; sessions whose process is gone count as ended."""
        c = c or self._conn
        live = []
        pid = os.getpid()
        for sid, host, spid in c.execute(
                "SELECT id, host, pid FROM sessions WHERE closed_at IS NULL AND id != ?", (self.session,)):
            if host == _HOST and (spid == pid or not _pid_alive(spid)):
                continue            # this process's other Project objects, or a killed process
            live.append(sid)
        if not live:
            return "", []
        return f" AND session NOT IN ({','.join('?' * len(live))})", live

    def can_undo(self) -> bool:
        if self.read_only:
            return False
        with self._lock:
            others, params = self._other_live_sessions()
            return bool(self.query(f"SELECT 1 FROM history WHERE undone=0{others} LIMIT 1", params))

    def can_redo(self) -> bool:
        if self.read_only:
            return False
        with self._lock:
            others, params = self._other_live_sessions()
            return bool(self.query(f"SELECT 1 FROM history WHERE undone=1{others} LIMIT 1", params))

    def history(self) -> pd.DataFrame:
        import pandas as pd  # lazy: paths that read no table (query, app start-up) skip its import
        with self._lock:
            return pd.read_sql_query("SELECT * FROM history ORDER BY id", self._conn)

    def undo(self, *, author=None) -> dict | None:
        """Invert the newest action not yet undone; returns its description or None."""
        return self._step_history(undo=True, author=author)

    def redo(self, *, author=None) -> dict | None:
        return self._step_history(undo=False, author=author)

    def _step_history(self, *, undo: bool, author=None) -> dict | None:
        author = author or default_author()
        t = now()
        with self.transaction() as c:
            others, params = self._other_live_sessions(c)
            if undo:
                row = c.execute(
                    f"SELECT id, kind, payload FROM history WHERE undone=0{others}"
                    " ORDER BY id DESC LIMIT 1", params).fetchone()
            else:
                row = c.execute(
                    f"SELECT id, kind, payload FROM history WHERE undone=1{others}"
                    " ORDER BY id ASC LIMIT 1", params).fetchone()
            if row is None:
                return None
            hid, kind, payload = row[0], row[1], json.loads(row[2])
            forward = not undo
            if kind == "label":
                lid = self._label_id(c, payload["label"], create=True)
                self._apply_label_changes(c, lid, payload["changes"], author, t, forward=forward)
            elif kind == "relabel":
                self._apply_relabel(c, payload["changes"], author, t, forward=forward)
            elif kind == "dev":
                for sid, old, new in payload["changes"]:
                    c.execute("UPDATE samples SET dev=? WHERE id=?", (new if forward else old, sid))
            elif kind == "cluster_label":
                self._apply_cluster_label(c, payload, forward=forward, author=author, t=t)
            elif kind == "clustering":
                self._apply_clustering_action(c, payload, forward=forward)
            else:
                raise ProjectError(f"unknown history entry kind {kind!r}")
            c.execute("UPDATE history SET undone=? WHERE id=?", (int(undo), hid))
        return {"kind": kind, **payload}

    # ------------------------------------------------------------------ runs
    def create_run(self, method: str, params: dict, *, device: str = "") -> int:
        with self.transaction() as c:
            return c.execute(
                "INSERT INTO runs (method, params, status, device, started_at) VALUES (?,?,?,?,?)",
                (method, json.dumps(_jsonable(params)), "running", device, now()),
            ).lastrowid

    def update_run(self, run_id: int, *, status=None, checkpoint=None, metrics=None, message=None,
                   finished: bool = False) -> None:
        sets, params = [], []
        for col, val in (("status", status), ("checkpoint", checkpoint), ("message", message)):
            if val is not None:
                sets.append(f"{col}=?")
                params.append(str(val))
        if metrics is not None:
            sets.append("metrics=?")
            params.append(json.dumps(_jsonable(metrics)))
        if finished:
            sets.append("finished_at=?")
            params.append(now())
        if not sets:
            return
        with self.transaction() as c:
            c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*params, run_id))

    def runs(self) -> pd.DataFrame:
        import pandas as pd  # lazy: paths that read no table (query, app start-up) skip its import
        with self._lock:
            df = pd.read_sql_query("SELECT * FROM runs ORDER BY id", self._conn)
        for col in ("params", "metrics"):
            df[col] = df[col].map(json.loads)
        return df

    def run(self, run_id: int) -> dict:
        """One run's row (``params`` and ``metrics`` decoded; NULL is None), read on its own."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM runs WHERE id=?", (int(run_id),))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        if row is None:
            raise ProjectError(f"no run {run_id} in {self.path}")
        out = dict(zip(names, row))
        for col in ("params", "metrics"):
            out[col] = json.loads(out[col])
        return out

    def run_dir(self, run_id: int) -> Path:
        d = self.path / "runs" / f"{int(run_id):04d}"
        if not self.read_only:
            try:
                make_dirs(d)
            except OSError as exc:
                raise (as_write_error(exc, d) or exc) from exc
        return d

    # ------------------------------------------------------------------ clusterings
    def save_clustering(self, name: str, sample_ids: Sequence[str], assignments, *, run_id=None,
                        params: dict | None = None) -> None:
        assignments = np.asarray(assignments).astype(int)
        if len(sample_ids) != len(assignments):
            raise ValueError("one cluster per sample expected")
        n = int(assignments.max()) + 1 if len(assignments) else 0
        with self.transaction() as c:
            c.execute("DELETE FROM clusterings WHERE name=?", (name,))
            c.execute(
                "INSERT INTO clusterings VALUES (?,?,?,?,?)",
                (name, run_id, n, json.dumps(_jsonable(params or {})), now()),
            )
            c.executemany(
                "INSERT INTO cluster_assignments VALUES (?,?,?)",
                [(name, s, int(a)) for s, a in zip(sample_ids, assignments)],
            )

    def clusterings(self) -> pd.DataFrame:
        import pandas as pd  # lazy: paths that read no table (query, app start-up) skip its import
        with self._lock:
            return pd.read_sql_query("SELECT * FROM clusterings ORDER BY created_at", self._conn)

    def load_clustering(self, name: str) -> tuple[list[str], np.ndarray]:
        rows = self.query(
            "SELECT a.sample_id, a.cluster FROM cluster_assignments a JOIN samples s"
            " ON s.id=a.sample_id WHERE a.clustering=? ORDER BY s.rowid", (name,))
        if not rows and not self.query("SELECT 1 FROM clusterings WHERE name=?", (name,)):
            raise ProjectError(f"no clustering named {name!r}")
        return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=int)

    def save_cluster_vectors(self, clustering: str, vectors: dict[int, dict[str, float]],
                             counts: dict[int, int], *, source: str = "algorithm1", author=None) -> None:
        """Store Algorithm-1 label vectors (not undoable: recomputed from the dev set)."""
        author = author or default_author()
        t = now()
        with self.transaction() as c:
            c.execute("DELETE FROM cluster_labels WHERE clustering=? AND source=?", (clustering, source))
            for k, vec in vectors.items():
                c.execute(
                    "INSERT INTO cluster_labels VALUES (?,?,?,?,?,?,?)",
                    (clustering, int(k), source, json.dumps(_jsonable(vec)), int(counts.get(k, 0)), author, t),
                )

    def set_cluster_label(self, clustering: str, cluster: int, vector: dict[str, float] | None, *,
                          author=None) -> None:
        """Override a cluster's label vector by hand (None removes the override); undoable."""
        author = author or default_author()
        t = now()
        with self.transaction() as c:
            old = c.execute(
                "SELECT vector FROM cluster_labels WHERE clustering=? AND cluster=? AND source='manual'",
                (clustering, int(cluster)),
            ).fetchone()
            payload = {"clustering": clustering, "cluster": int(cluster),
                       "old": json.loads(old[0]) if old else None, "new": vector}
            self._apply_cluster_label(c, payload, forward=True, author=author, t=t)
            self._push_history(c, "cluster_label", payload, author, t)

    def _apply_cluster_label(self, c, payload, *, forward: bool, author: str, t: str) -> None:
        vec = payload["new"] if forward else payload["old"]
        c.execute(
            "DELETE FROM cluster_labels WHERE clustering=? AND cluster=? AND source='manual'",
            (payload["clustering"], payload["cluster"]),
        )
        if vec is not None:
            c.execute(
                "INSERT INTO cluster_labels VALUES (?,?,'manual',?,0,?,?)",
                (payload["clustering"], payload["cluster"], json.dumps(vec), author, t),
            )

    def cluster_vectors(self, clustering: str) -> pd.DataFrame:
        """Rows (cluster, source, vector dict, n_dev, author, time)."""
        import pandas as pd  # lazy: paths that read no table (query, app start-up) skip its import
        with self._lock:
            df = pd.read_sql_query(
                "SELECT cluster, source, vector, n_dev, author, time FROM cluster_labels"
                " WHERE clustering=? ORDER BY cluster, source", self._conn, params=(clustering,))
        df["vector"] = df["vector"].map(json.loads)
        return df

    # ------------------------------------------------------------------ session state
    def save_state(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO session_state VALUES (?,?)", (key, json.dumps(_jsonable(value))))

    def load_state(self, key: str, default=None):
        r = self.query("SELECT value FROM session_state WHERE key=?", (key,))
        return json.loads(r[0][0]) if r else default

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        df = self.samples()
        labels = self.labels()
        label_counts: dict[str, int] = {}
        for names in labels.values():
            for n in names:
                label_counts[n] = label_counts.get(n, 0) + 1
        return {
            "name": self.name,
            "path": str(self.path),
            "schema_version": self.schema_version,
            "n_samples": len(df),
            "by_split": df["split"].replace("", "(none)").value_counts().to_dict(),
            "by_modality": df["modality"].replace("", "(none)").value_counts().to_dict(),
            "by_kind": df["kind"].replace("", "(none)").value_counts().to_dict(),
            "by_dataset": df["dataset"].replace("", "(none)").value_counts().to_dict(),
            "by_label": {n: label_counts.get(n, 0) for n in self.label_names()},
            "n_dev": int(df["dev"].sum()) if len(df) else 0,
            "n_runs": len(self.runs()),
            "arrays": self.arrays.names(),
        }


_HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError):
        return True
    return True


def _writable(path: Path, db: Path) -> bool:
    """Whether SQLite can write here (the folder for its -wal/-shm files, and the database)."""
    return os.access(path, os.W_OK) and os.access(db, os.W_OK)


def _switch_to_wal(conn, db: Path, timeout: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried: SQLite answers SQLITE_BUSY to a journal-mode change
    at once, without calling the busy handler, while another process opens or creates the same
    database (CI saw it with three processes creating one project), or leaves the mode as it
    was. Another process may have switched it meanwhile, so the mode is read again each time."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal":
                return
            last = None
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                raise
            last = exc
        if time.monotonic() > deadline:
            raise last or sqlite3.OperationalError(f"{db}: could not switch to WAL mode")
        time.sleep(delay * (0.5 + random.random()))    # jitter: the others retry too
        delay = min(delay * 2, 0.2)


def _schema_state(conn) -> str:
    """'missing' (no schema yet), 'current', or the version number of an older/newer schema."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        return "missing"
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        return "missing"
    version = int(row[0])
    if version != SCHEMA_VERSION:
        return str(version)
    for (table, column) in ADDED_COLUMNS:
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in cols:
            return str(version)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='sessions'").fetchone():
        return str(version)
    return "current"


def _add_columns(conn) -> None:
    for (table, column), decl in ADDED_COLUMNS.items():
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if cols and column not in cols:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _load_stacked(path: Path, index):
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.asarray(arr[index]) if index is not None else np.asarray(arr)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return obj
