"""What goes wrong when a project is written, said in words: a full disk, a read-only folder.

``ProjectError`` and its kinds live here (``store`` re-exports them) so the array writer, the
database and the importer raise the same errors. ``as_write_error`` turns the low-level
exception (an ``OSError`` from a file write, a ``sqlite3.OperationalError`` from a commit) into
a :class:`DiskFullError` or :class:`ReadOnlyError` naming the path; anything else is left as it
is. File modes: every file a project writes is readable by the owner's group (as the umask
allows) and never by the world, so a lab can share a project without exposing it.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path


class ProjectError(Exception):
    """A project cannot be opened or an edit is invalid; the message says why."""


class NewerSchemaError(ProjectError):
    pass


class ProjectWriteError(ProjectError):
    """A write to the project failed for a reason outside LatentMap (disk, permissions)."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class DiskFullError(ProjectWriteError):
    pass


class ReadOnlyError(ProjectWriteError):
    pass


_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_SQLITE_FULL = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE",
                "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMMAP"}


def disk_full(path, detail: str = "") -> DiskFullError:
    return DiskFullError(f"disk full: cannot write {path}" + (f" ({detail})" if detail else "")
                         + "; free some space and run the command again (nothing half-written "
                           "was kept)", path)


def read_only(path, detail: str = "", *, hint: str | None = None) -> ReadOnlyError:
    hint = hint if hint is not None else ("the project can be viewed but not changed here (copy "
                                          "it to a writable folder to edit it)")
    return ReadOnlyError(f"read-only: {path}" + (f" ({detail})" if detail else "") + f"; {hint}", path)


def as_write_error(exc: BaseException, path) -> ProjectWriteError | None:
    """The ``DiskFullError``/``ReadOnlyError`` for a failed write to ``path``, or None."""
    if isinstance(exc, ProjectWriteError):
        return exc
    if isinstance(exc, OSError) and exc.errno is None and "requested and" in str(exc):
        # numpy's tofile: a short fwrite ("1048576 requested and 383968 written") loses errno;
        # the file system took only part of the data, i.e. it is full (or the file-size limit).
        return disk_full(path, "the file system accepted only part of the data")
    if isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename or path
        if exc.errno in _DISK_FULL:
            return disk_full(where, exc.strerror or "")
        if exc.errno in _READ_ONLY:
            return read_only(where, exc.strerror or "")
        return None
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc).lower()
        if name.startswith("SQLITE_READONLY") or "readonly database" in text:
            return read_only(path, "the database cannot be written")
        if name in _SQLITE_FULL or "disk is full" in text:
            return disk_full(path, str(exc))
    return None


# ---------------------------------------------------------------------------------- file modes
def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (threads may be writing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """Mode for a new project file: read/write for owner and group as the umask allows, none
    for others (0640 with umask 022, 0660 with 002)."""
    return 0o660 & ~_umask()


def dir_mode() -> int:
    return 0o770 & ~_umask()


def set_file_mode(path) -> None:
    """Give a file written by the project the project's mode (mkstemp makes 0600 files)."""
    try:
        os.chmod(path, file_mode())
    except OSError:
        pass


def make_dirs(path) -> Path:
    """``mkdir -p`` with the project's folder mode (group may enter, others not)."""
    path = Path(path)
    if path.is_dir():
        return path
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        try:
            if stat.S_IMODE(d.stat().st_mode) != dir_mode():
                os.chmod(d, dir_mode())
        except OSError:
            pass
    return path
