"""Which reader handles a file: a registry keyed by file-name pattern.

A reader is a function ``read(path, **options)`` yielding ``LoadedSample`` or ``LoadedStack``
objects (a file may hold one sample, a series, the frames of a 4D volume or a whole dataset).
Readers register themselves with ``@register("name", "*.ext", ...)``; the first matching
pattern wins, and patterns are matched case-insensitively against the file name.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Files that sit beside data but are not samples (notes, label tables, the pixel files of a
# MetaImage .mhd header): skipped silently, counted as "ignored".
IGNORED_PATTERNS = ("*.md", "*.txt", "*.json", "*.py", "*.yaml", "*.yml", "*.html", "*.pdf",
                    "*.log", "*.raw", "*.zraw", ".*", "thumbs.db", "*.sha256", "*.md5", "license*", "readme*")


@dataclass(frozen=True)
class Reader:
    name: str
    patterns: tuple[str, ...]
    read: Callable


READERS: list[Reader] = []
_builtins_loaded = False


def register(name: str, *patterns: str):
    def deco(fn):
        READERS.append(Reader(name, tuple(p.lower() for p in patterns), fn))
        return fn
    return deco


def _load_builtin_readers() -> None:
    # Imported for their @register side effect; kept lazy so `core.io.registry` stays cheap.
    # Order matters: the first matching pattern wins.
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from . import dicom, images, manifest, medmnist, meshes, volumes  # noqa: F401


def reader_for(path) -> Reader | None:
    """The reader whose pattern matches the file name, or None."""
    _load_builtin_readers()
    name = Path(path).name.lower()
    for reader in READERS:
        if any(fnmatch.fnmatch(name, pat) for pat in reader.patterns):
            return reader
    return None


def reader_named(name: str) -> Reader:
    _load_builtin_readers()
    for reader in READERS:
        if reader.name == name:
            return reader
    raise KeyError(f"no reader named {name!r}")


def is_ignored(path) -> bool:
    name = Path(path).name.lower()
    return any(fnmatch.fnmatch(name, pat) for pat in IGNORED_PATTERNS)


def supported_patterns() -> list[str]:
    _load_builtin_readers()
    return [p for r in READERS for p in r.patterns]
