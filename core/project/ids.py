"""Stable sample ids: the same source always gets the same id, so re-imports do not duplicate."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def make_id(source, *parts) -> str:
    """``<stem>-<hash8>[/part...]`` from a file path (resolved) and optional sub-parts.

    The hash is of the absolute path, so two files with the same name in different folders
    differ; the readable stem keeps ids recognisable in tables and exports.
    """
    p = Path(str(source))
    try:
        key = str(p.resolve())
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13)
        key = str(p.absolute())
    stem = _SAFE.sub("_", p.name.split(".")[0])[:40] or "sample"
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    tail = "".join(f"/{_SAFE.sub('_', str(x))}" for x in parts)
    return f"{stem}-{digest}{tail}"
