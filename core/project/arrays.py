"""Array files beside the project database, written atomically.

Large arrays (point clouds, embeddings, projections, thumbnails, residuals) do not belong in
SQLite. Each is one ``.npz`` holding ``ids`` (the sample ids, one per row) and ``data``; a
write goes to a temporary file in the same folder and is renamed over the old one, so a crash
mid-write leaves the previous version intact.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from .faults import as_write_error, make_dirs, set_file_mode

try:  # POSIX: a writer holds a lock on its temp file, so a cleaner can tell it from an orphan
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")    # what atomic_write_bytes's mkstemp names
# Where a project writes (a project folder may hold other files of the user's: left alone).
_WRITTEN_FOLDERS = ("arrays", "data", "runs")


def atomic_write_bytes(path: Path, write, *, durable: bool = True) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename over it.

    ``durable=False`` skips the fsync: still atomic (never a half file), but a power cut may
    lose the newest version. For data that can be recomputed (meshes, thumbnails), where the
    flush dominated the cost of writing thousands of small files.

    The temp file is locked while it is written (a killed writer's lock goes with it, so
    :func:`remove_orphan_temps` can tell an orphan from a write in progress) and gets the
    project's file mode (group-readable, see ``faults.file_mode``) before the rename. A full
    disk or a read-only folder raises ``DiskFullError`` / ``ReadOnlyError`` naming ``path``,
    and no temp file is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            set_file_mode(tmp)
            os.replace(tmp, path)
            tmp = None
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        err = as_write_error(exc, path) if isinstance(exc, Exception) else None
        if err is not None and err is not exc:
            raise err from exc
        raise


def remove_orphan_temps(root: Path, *, min_age_s: float = 2.0) -> list[Path]:
    """Delete the temp files that killed writes left in a project folder ``root`` (its top
    level and ``arrays/``, ``data/``, ``runs/``), named ``.<name>.<8 random chars>.tmp``.

    A temp file whose writer is alive is locked and kept; without ``flock`` (Windows), only
    temp files older than an hour are removed. Files younger than ``min_age_s`` are kept
    either way (a writer between creating and locking its file). Returns what was removed.
    """
    removed = []
    now = time.time()
    root = Path(root)
    walks = [(str(root), [], [e.name for e in os.scandir(root) if e.is_file()])] if root.is_dir() else []
    for sub in _WRITTEN_FOLDERS:
        walks.extend(os.walk(root / sub))
    for dirpath, dirnames, filenames in walks:
        for name in filenames:
            if not _TMP.match(name):
                continue
            p = Path(dirpath) / name
            try:
                age = now - p.stat().st_mtime
                if age < min_age_s or (fcntl is None and age < 3600):
                    continue
                if fcntl is not None:
                    with open(p, "rb") as fh:
                        try:
                            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError:
                            continue  # a live writer holds it
                        p.unlink()
                else:
                    p.unlink()
                removed.append(p)
            except OSError:
                continue
    return removed


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))


class ArrayStore:
    """Named arrays keyed by sample id, stored under ``<project>/arrays``."""

    def __init__(self, root: Path, *, read_only: bool = False):
        # Created on the first write, so a read-only project opens without it.
        self.root = Path(root)
        self.read_only = read_only

    def path(self, name: str) -> Path:
        if not _NAME.match(name) or ".." in name:
            raise ValueError(f"invalid array name {name!r}: use letters, digits, '_', '-', '.', '/'")
        return self.root / f"{name}.npz"

    def save(self, name: str, data: np.ndarray, ids=None, *, durable: bool = True, **extra) -> Path:
        data = np.asarray(data)
        payload = {"data": data}
        if ids is not None:
            ids = np.asarray([str(i) for i in ids])
            if len(ids) != len(data):
                raise ValueError(f"array {name!r}: {len(ids)} ids for {len(data)} rows")
            payload["ids"] = ids
        for key, value in extra.items():
            payload[key] = np.asarray(value)
        target = self.path(name)
        if self.read_only:
            from .faults import read_only

            raise read_only(target)
        atomic_write_bytes(target, lambda fh: np.savez(fh, **payload), durable=durable)
        return target

    def load(self, name: str):
        """Return ``(ids, data)``; ``ids`` is None when the array was saved without ids."""
        with np.load(self.path(name), allow_pickle=False) as z:
            ids = z["ids"] if "ids" in z.files else None
            return ids, z["data"]

    def load_extra(self, name: str) -> dict:
        with np.load(self.path(name), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def names(self, prefix: str = "") -> list[str]:
        out = []
        for p in sorted(self.root.rglob("*.npz")):
            name = p.relative_to(self.root).as_posix()[: -len(".npz")]
            if name.startswith(prefix):
                out.append(name)
        return out

    def delete(self, name: str) -> None:
        p = self.path(name)
        if self.read_only:
            from .faults import read_only

            raise read_only(p)
        if p.exists():
            p.unlink()
