"""Projects the user opened lately, newest first, kept between sessions (File > Open Recent).

A JSON list in the user's data folder, written through a temporary file and a rename so a crash
never leaves half a list; an unreadable or foreign file reads as no recent projects.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MAX_RECENT = 10


def recent_file() -> Path:
    from app.main import user_data_dir

    return user_data_dir() / "recent-projects.json"


def _key(path) -> str | None:
    """How ``path`` is listed: a folder resolved; a PostgreSQL URL as typed, but never one that
    holds a password (the list is a plain file in the user's folder): None, not listed."""
    text = str(path)
    if "://" in text:
        from urllib.parse import urlsplit

        try:
            return None if urlsplit(text).password else text
        except ValueError:
            return None
    return str(Path(text).expanduser().resolve())


def recent_projects() -> list[str]:
    """Recently opened projects, newest first (folders that have gone are kept: a network drive
    may be back tomorrow; the menu shows them greyed)."""
    try:
        data = json.loads(recent_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [p for p in data if isinstance(p, str) and p][:MAX_RECENT]


def _write(paths: list[str]) -> list[str]:
    f = recent_file()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f.name + ".tmp")
        tmp.write_text(json.dumps(paths, indent=1), encoding="utf-8")
        os.replace(tmp, f)
    except OSError:
        pass  # a read-only home: the list is a convenience, never a reason to fail an open
    return paths


def remember_project(path) -> list[str]:
    """Put ``path`` first in the list (once), keeping at most :data:`MAX_RECENT`."""
    key = _key(path)
    if key is None:
        return recent_projects()
    return _write([key] + [p for p in recent_projects() if p != key][: MAX_RECENT - 1])


def clear_recent() -> list[str]:
    return _write([])


def is_available(path: str) -> bool:
    """Whether a listed project can be opened now (its folder and database file are there)."""
    if "://" in path:
        return True
    return (Path(path) / "project.sqlite").exists() or (Path(path) / "project.toml").exists()
