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
        return sample_id in set(self._ids)

    def select(self, ids: Iterable[str], *, mode: str = REPLACE, current: str | None = None) -> None:
        ids = [str(i) for i in ids]
        if mode == ADD:
            new = tuple(dict.fromkeys((*self._ids, *ids)))
        elif mode == SUBTRACT:
            drop = set(ids)
            new = tuple(i for i in self._ids if i not in drop)
        elif mode == REPLACE:
            new = tuple(dict.fromkeys(ids))
        else:
            raise ValueError(f"unknown selection mode {mode!r}")
        if current is None:
            current = self._current if self._current in set(new) else (new[0] if new else None)
        if new != self._ids:
            self._ids = new
            self.changed.emit(new)
        self.set_current(current)

    def set_current(self, sample_id: str | None) -> None:
        if sample_id != self._current:
            self._current = sample_id
            self.current_changed.emit(sample_id)

    def clear(self) -> None:
        self.select([], mode=REPLACE)
