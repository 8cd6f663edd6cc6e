"""Neighbours strip: the k nearest samples of the current one in the active embedding (cosine),
with thumbnails, labels and distances, and the predicted class from Algorithm 1 and a kNN vote:
"which known cases does this look like"."""
from __future__ import annotations

import html

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QSpinBox, QVBoxLayout, QWidget

from app.components.neighbours import NeighbourIndex, neighbours_of
from app.components.predictions import prediction_for


def format_distance(d: float) -> str:
    """4 significant digits: a collapsed run's 2.1e-05 must not read 0.000."""
    return f"{d:.4g}"


def gray_pixmap(a: np.ndarray, size: int) -> QPixmap:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    img = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(img).scaled(size, size, Qt.KeepAspectRatio, Qt.FastTransformation)


class _Tile(QFrame):
    clicked = Signal(str)

    def __init__(self, sid, pixmap, caption, tooltip, parent=None):
        super().__init__(parent)
        self.sid = sid
        self.setFrameShape(QFrame.StyledPanel)
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip(tooltip)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(3, 3, 3, 3)
        lay.setSpacing(1)
        img = QLabel(self)
        img.setAlignment(Qt.AlignCenter)
        if pixmap is not None:
            img.setPixmap(pixmap)
        else:
            img.setText("(no image)")
        text = QLabel(caption, self)
        text.setAlignment(Qt.AlignCenter)
        text.setStyleSheet("font-size: 9pt")
        lay.addWidget(img)
        lay.addWidget(text)
        lay.addStretch(1)
        self.setFixedWidth(pixmap.width() + 16 if pixmap is not None else 100)

    def mousePressEvent(self, ev):
        self.clicked.emit(self.sid)
        super().mousePressEvent(ev)


class NeighboursView(QWidget):
    """``updated(result)`` after each refresh (a ``NeighbourResult`` or None)."""

    updated = Signal(object)

    def __init__(self, model, selection, parent=None, *, thumb_size: int = 84):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.thumb_size = thumb_size
        self.result = None
        self.prediction = None
        self._index: NeighbourIndex | None = None
        self._index_key = None

        self.k = QSpinBox(self)
        self.k.setRange(1, 50)
        self.k.setValue(8)
        self.k.setPrefix("k = ")
        self.k.valueChanged.connect(self.refresh)
        self.header = QLabel("no sample selected", self)
        self.header.setTextFormat(Qt.RichText)
        self.header.setWordWrap(True)
        self._strip = QWidget()
        self._strip_layout = QHBoxLayout(self._strip)
        self._strip_layout.setContentsMargins(2, 2, 2, 2)
        self._strip_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._strip)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumHeight(thumb_size + 60)
        self.scroll = scroll

        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.k)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)

        selection.current_changed.connect(lambda _: self.refresh())
        model.run_changed.connect(self._invalidate)
        model.labels_changed.connect(lambda _: self.refresh())
        model.clustering_changed.connect(lambda _: self.refresh())
        model.samples_changed.connect(self._invalidate)
        self.refresh()

    def _invalidate(self, *_):
        self._index = None
        self.refresh()

    def index(self) -> NeighbourIndex | None:
        name = self.model.run_name()
        from core.project.accessors import embedding_key

        run, arrays = self.model.active_run, self.model.project.arrays
        key = (name, arrays.path(embedding_key(run)).stat().st_mtime
               if run is not None and arrays.exists(embedding_key(run)) else None)
        if self._index is None or key != self._index_key:
            emb = self.model.embedding()
            self._index = None if emb is None else NeighbourIndex(*emb)
            self._index_key = key
        return self._index

    def _clear_tiles(self):
        while self._strip_layout.count() > 1:
            w = self._strip_layout.takeAt(0).widget()
            if w is not None:
                # hidden at once: several refreshes in one event-loop turn (a placed case changes
                # samples, run and clustering) must not paint old tiles under the new ones
                w.hide()
                w.deleteLater()

    def tiles(self) -> list[_Tile]:
        return [self._strip_layout.itemAt(i).widget() for i in range(self._strip_layout.count() - 1)]

    def refresh(self, *_):
        sid = self.selection.current
        self._clear_tiles()
        self.result = None
        if sid is None:
            self.header.setText("no sample selected")
            self.updated.emit(None)
            return
        index = self.index()
        if index is None:
            self.header.setText("no embedding yet: train or apply a method to see neighbours")
            self.updated.emit(None)
            return
        res = neighbours_of(self.model, sid, self.k.value(), index=index)
        if res is None:
            self.header.setText(f"{sid} is not in the embedding of {self.model.run_name()}")
            self.updated.emit(None)
            return
        self.result = res
        own = ", ".join(self.model.labels().get(sid, [])) or "unlabelled"
        pred = prediction_for(self.model, sid)
        self.prediction = pred
        if pred.labels:
            colour = "#a40000" if pred.low_support else "#000"
            pred_html = f"<b style='color:{colour}'>{html.escape(pred.describe())}</b>"
        else:
            pred_html = f"<i>{html.escape(pred.describe())}</i>"
        vote = f"{res.vote} ({res.confidence:.0%} of weighted votes)" if res.vote else "— (no labelled neighbour)"
        new = ("<span style='background:#ffd54f'>&nbsp;NEW CASE&nbsp;</span> "
               if sid in getattr(self.model, "placed_ids", ()) else "")
        self.header.setText(f"{new}<b>{html.escape(sid)}</b> [{html.escape(own)}] &nbsp; Algorithm 1: {pred_html}"
                            f" &nbsp; kNN vote (k={len(res.neighbours)}): <b>{html.escape(vote)}</b>")
        for n in res.neighbours:
            try:
                pix = gray_pixmap(self.model.thumbnail(n.id, size=self.thumb_size), self.thumb_size)
            except Exception:  # noqa: BLE001 - a missing array shows as text, not a crash
                pix = None
            labels = ", ".join(n.labels) or "unlabelled"
            organ = self.model.structure_name(n.id)  # a scan's organs look alike at thumbnail size
            tile = _Tile(n.id, pix, (f"{organ}\n" if organ else "") + f"{labels}\nd={format_distance(n.distance)}",
                         f"{n.id}\nlabels: {labels}\ncosine distance: {n.distance:.6g}", self._strip)
            tile.clicked.connect(self._select)
            self._strip_layout.insertWidget(self._strip_layout.count() - 1, tile)
        self.updated.emit(res)

    def _select(self, sid: str) -> None:
        self.selection.select([sid], current=sid)
