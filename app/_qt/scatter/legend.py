"""Legend beside the scatter: one row per category with its count, or a colour bar."""
from __future__ import annotations

import numpy as np
from qtpy import QtCore, QtGui, QtWidgets

from .palette import Coding

#: categories beyond this many are summarised in one row (a 5000-cluster legend helps nobody)
MAX_ROWS = 60


def _swatch(rgb, size: int = 12) -> QtGui.QIcon:
    pm = QtGui.QPixmap(size, size)
    pm.fill(QtGui.QColor(int(rgb[0]), int(rgb[1]), int(rgb[2])))
    return QtGui.QIcon(pm)


class ScatterLegend(QtWidgets.QWidget):
    """``category_clicked(name, modifiers)`` when a row is clicked (the view selects its members)."""

    category_clicked = QtCore.Signal(str, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._coding: Coding | None = None
        self._title = QtWidgets.QLabel("")
        self._title.setStyleSheet("font-weight: bold")
        self._tree = QtWidgets.QTreeWidget()
        self._tree.setColumnCount(2)
        self._tree.setHeaderHidden(True)
        self._tree.setRootIsDecorated(False)
        self._tree.setUniformRowHeights(True)
        self._tree.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
        self._tree.itemClicked.connect(self._clicked)
        self._bar = QtWidgets.QLabel()
        self._range = QtWidgets.QLabel()
        self._range.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self._title)
        lay.addWidget(self._tree, 1)
        lay.addWidget(self._bar)
        lay.addWidget(self._range)
        lay.addStretch(0)
        self._bar.hide()
        self._range.hide()
        self.setMinimumWidth(140)

    # ------------------------------------------------------------------ API
    @property
    def title(self) -> str:
        return self._title.text()

    def counts(self) -> dict[str, int]:
        """Category -> number of points (empty for a continuous colouring)."""
        c = self._coding
        if c is None or not c.categorical:
            return {}
        return dict(zip(c.names, c.counts))

    def rows(self) -> list[tuple[str, int]]:
        """The rows as shown (name, count), including a summary row when there are too many."""
        out = []
        for i in range(self._tree.topLevelItemCount()):
            it = self._tree.topLevelItem(i)
            out.append((it.text(0), int(it.data(1, QtCore.Qt.UserRole) or 0)))
        return out

    def set_coding(self, title: str, coding: Coding | None) -> None:
        self._coding = coding
        self._title.setText(title)
        self._tree.clear()
        if coding is None:
            self._tree.hide(); self._bar.hide(); self._range.hide()
            return
        if coding.categorical:
            self._bar.hide(); self._range.hide(); self._tree.show()
            items = []
            for k, (name, n) in enumerate(zip(coding.names, coding.counts)):
                if k >= MAX_ROWS:
                    rest = coding.counts[k:]
                    it = QtWidgets.QTreeWidgetItem([f"… {len(rest)} more", f"{sum(rest):,}"])
                    it.setData(1, QtCore.Qt.UserRole, int(sum(rest)))
                    items.append(it)
                    break
                it = QtWidgets.QTreeWidgetItem([name, f"{n:,}"])
                it.setIcon(0, _swatch(coding.colours[k]))
                it.setData(0, QtCore.Qt.UserRole, name)
                it.setData(1, QtCore.Qt.UserRole, int(n))
                it.setTextAlignment(1, QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
                items.append(it)
            self._tree.addTopLevelItems(items)
            self._tree.resizeColumnToContents(0)
            self._tree.resizeColumnToContents(1)
        else:
            self._tree.hide(); self._bar.show(); self._range.show()
            lut = coding.colours[:-1]
            img = np.ascontiguousarray(np.repeat(lut[::-1][:, None, :], 16, axis=1))  # top = max
            qimg = QtGui.QImage(img.data, img.shape[1], img.shape[0], img.shape[1] * 3,
                                QtGui.QImage.Format_RGB888).copy()
            self._bar.setPixmap(QtGui.QPixmap.fromImage(qimg).scaled(16, 160))
            n = len(coding.codes)
            self._range.setText(f"max {coding.vmax:.4g}\nmin {coding.vmin:.4g}\n"
                                f"{n - coding.n_missing:,} values"
                                + (f"\n{coding.n_missing:,} missing" if coding.n_missing else ""))

    def _clicked(self, item, _col):
        name = item.data(0, QtCore.Qt.UserRole)
        if name is not None:
            self.category_clicked.emit(str(name), QtWidgets.QApplication.keyboardModifiers())
