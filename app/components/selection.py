"""The one selection every view follows: a set of sample ids plus the current sample."""
from __future__ import annotations

from typing import Iterable

from psygnal import Signal

REPLACE, ADD, SUBTRACT = "replace", "add", "subtract"


class Selection:
    """``changed(ids: tuple)`` when the set changes; ``current_changed(id | None)`` when the
    focused sample changes (the one the image, mesh and neighbour views show)."""

    changed = Signal(object)
    current_changed = Signal(object)

    def __init__(self):
        self._ids: tuple[str, ...] = ()
        self._members: dict[str, None] = {}
        self._current: str | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def current(self) -> str | None:
        return self._current

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, sample_id) -> bool:
        return sample_id in self._members

    def select(self, ids: Iterable[str], *, mode: str = REPLACE, current: str | None = None) -> None:
        # Lasso selections reach hundreds of thousands of ids: avoid per-id work beyond one dict.
        ids = ids if isinstance(ids, (list, tuple)) and (not ids or isinstance(ids[0], str)) \
            else [str(i) for i in ids]
        if mode == ADD:
            members = dict.fromkeys(self._ids)
            members.update(dict.fromkeys(ids))
        elif mode == SUBTRACT:
            drop = set(ids)
            members = dict.fromkeys(i for i in self._ids if i not in drop)
        elif mode == REPLACE:
            members = dict.fromkeys(ids)
        else:
            raise ValueError(f"unknown selection mode {mode!r}")
        new = tuple(members)
        if current is None:
            current = self._current if self._current in members else (new[0] if new else None)
        if new != self._ids:
            self._ids = new
            self._members = members
            self.changed.emit(new)
        self.set_current(current)

    def set_current(self, sample_id: str | None) -> None:
        if sample_id != self._current:
            self._current = sample_id
            self.current_changed.emit(sample_id)

    def clear(self) -> None:
        self.select([], mode=REPLACE)
