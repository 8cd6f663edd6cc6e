"""The tooltip-like card shown while the pointer is over a point: thumbnail, id and labels."""
from __future__ import annotations

import numpy as np
from qtpy import QtCore, QtGui, QtWidgets


def gray_to_pixmap(img: np.ndarray, size: int = 96) -> QtGui.QPixmap:
    img = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if img.ndim == 3:  # rgb thumbnails
        h, w, _ = img.shape
        q = QtGui.QImage(img.data, w, h, w * 3, QtGui.QImage.Format_RGB888).copy()
    else:
        h, w = img.shape
        q = QtGui.QImage(img.data, w, h, w, QtGui.QImage.Format_Grayscale8).copy()
    return QtGui.QPixmap.fromImage(q).scaled(size, size, QtCore.Qt.KeepAspectRatio, QtCore.Qt.FastTransformation)


class HoverCard(QtWidgets.QFrame):
    """A child frame (not a top-level tooltip window, which window managers may delay or steal
    focus for) that follows the pointer inside the scatter."""

    def __init__(self, parent):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.StyledPanel)
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QtGui.QPalette.Window, QtGui.QColor(255, 255, 240))
        pal.setColor(QtGui.QPalette.WindowText, QtGui.QColor(20, 20, 20))
        self.setPalette(pal)
        self.setAttribute(QtCore.Qt.WA_TransparentForMouseEvents)
        self.image = QtWidgets.QLabel()
        self.text = QtWidgets.QLabel()
        self.text.setTextFormat(QtCore.Qt.PlainText)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 6, 4)
        lay.addWidget(self.image)
        lay.addWidget(self.text)
        self.hide()

    def show_at(self, text: str, thumbnail: np.ndarray | None, pos: QtCore.QPoint) -> None:
        self.text.setText(text)
        if thumbnail is not None:
            self.image.setPixmap(gray_to_pixmap(thumbnail))
            self.image.show()
        else:
            self.image.clear()
            self.image.hide()
        self.adjustSize()
        parent = self.parentWidget()
        # below-right of the pointer, flipped to stay inside the parent
        x, y = pos.x() + 14, pos.y() + 14
        if x + self.width() > parent.width():
            x = pos.x() - 14 - self.width()
        if y + self.height() > parent.height():
            y = pos.y() - 14 - self.height()
        self.move(max(0, x), max(0, y))
        self.show()
        self.raise_()
