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
from pathlib import Path

import numpy as np

_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def atomic_write_bytes(path: Path, write, *, durable: bool = True) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename over it.

    ``durable=False`` skips the fsync: still atomic (never a half file), but a power cut may
    lose the newest version. For data that can be recomputed (meshes, thumbnails), where the
    flush dominated the cost of writing thousands of small files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))


class ArrayStore:
    """Named arrays keyed by sample id, stored under ``<project>/arrays``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
        if p.exists():
            p.unlink()
