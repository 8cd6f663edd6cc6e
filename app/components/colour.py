"""What the scatter (and legends) colour by: a column name of ``ProjectModel.columns()``."""
from __future__ import annotations

from psygnal import Signal


class ColourBy:
    changed = Signal(str)

    def __init__(self, column: str = "cluster"):
        self._column = column

    @property
    def column(self) -> str:
        return self._column

    @column.setter
    def column(self, value: str) -> None:
        if value != self._column:
            self._column = value
            self.changed.emit(value)
