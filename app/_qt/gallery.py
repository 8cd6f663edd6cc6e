"""The selection as a gallery: a scrollable thumbnail grid of the selected samples (a lasso, a
cluster, a filter), sortable by distance to the selection's centre in the active embedding, by
label or by prediction, and labelled from directly: pick tiles (click, Shift/Ctrl-click, or
all shown) and apply a label, as FiftyOne's grid does. Double-click shows a sample in the other
views without changing the selection.

Thumbnails (images, a volume's middle slice, a mask's projection) are made in small batches on
the GUI thread's idle time, so a large selection shows its grid at once and fills in.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QIcon, QImage, QPixmap
from qtpy.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QListWidget,
                            QListWidgetItem, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from app._qt.keys import ClaimKeys

SORTS = ("distance to centre", "label", "prediction", "id")
#: at most this many tiles (the rest is counted in the header; sort to bring others first)
MAX_TILES = 1000
BATCH = 24


def _pixmap(a: np.ndarray, size: int) -> QPixmap:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    img = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(img).scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)


def _placeholder(size: int, text: str = "") -> QPixmap:
    from qtpy.QtGui import QPainter

    pm = QPixmap(size, size)
    pm.fill(QColor("#d8d8d8"))
    if text:
        p = QPainter(pm)
        p.drawText(pm.rect(), Qt.AlignCenter | Qt.TextWordWrap, text)
        p.end()
    return pm


def centre_distances(ids, emb_ids, emb) -> np.ndarray:
    """Cosine distance of each of ``ids`` to the normalised mean of their embeddings (NaN for
    ids outside the embedding)."""
    row = {str(s): i for i, s in enumerate(emb_ids)}
    rows = [row.get(str(s), -1) for s in ids]
    have = np.array([r >= 0 for r in rows])
    out = np.full(len(ids), np.nan)
    if not have.any():
        return out
    x = np.asarray(emb, dtype=np.float64)[[r for r in rows if r >= 0]]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    c = x.mean(0)
    c /= max(np.linalg.norm(c), 1e-300)
    out[have] = 1.0 - x @ c
    return out


class GalleryView(QWidget):
    """``filled()`` once every tile of the current selection has its thumbnail."""

    filled = Signal()

    def __init__(self, model, selection, parent=None, *, thumb_size: int = 96):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.thumb_size = thumb_size
        self.shown: list[str] = []
        self._pending: list[int] = []
        self._preds = None

        self.sort_box = QComboBox()
        self.sort_box.addItems(SORTS)
        self.sort_box.currentIndexChanged.connect(lambda *_: self.rebuild())
        self.size_box = QSpinBox()
        self.size_box.setRange(48, 256)
        self.size_box.setSingleStep(16)
        self.size_box.setValue(thumb_size)
        self.size_box.setSuffix(" px")
        self.size_box.valueChanged.connect(self._resize_tiles)
        self.header = QLabel("select samples (lasso, cluster, table) to see them here")
        self.label_box = QComboBox()
        self.label_box.setEditable(True)  # type to search
        self.label_box.setInsertPolicy(QComboBox.NoInsert)
        self.label_box.setMinimumContentsLength(12)
        self.apply_btn = QPushButton("Label picked")
        self.apply_btn.setToolTip("Give the picked tiles this label (replaces on single-label data; never removes)")
        self.apply_btn.clicked.connect(lambda: self.apply_label(self.label_box.currentText(), self.picked_ids()))
        self.apply_all_btn = QPushButton("Label all shown")
        self.apply_all_btn.clicked.connect(lambda: self.apply_label(self.label_box.currentText(), list(self.shown)))

        self.grid = QListWidget()
        self.grid.setObjectName("gallery-grid")
        self.grid.setViewMode(QListWidget.IconMode)
        self.grid.setResizeMode(QListWidget.Adjust)
        self.grid.setMovement(QListWidget.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.grid.setSpacing(4)
        self.grid.setWordWrap(True)
        self.grid.itemDoubleClicked.connect(self._show_one)
        self._claimed_keys = ClaimKeys(self.grid, self._number_key)  # 1-9 label the picked tiles
        self._resize_tiles(thumb_size)

        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(QLabel("sort"))
        top.addWidget(self.sort_box)
        top.addWidget(self.size_box)
        top.addWidget(self.label_box)
        top.addWidget(self.apply_btn)
        top.addWidget(self.apply_all_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.grid, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(120)  # a lasso drag emits many changes: rebuild once it settles
        self._timer.timeout.connect(self.rebuild)
        self._filler = QTimer(self)
        self._filler.setInterval(0)
        self._filler.timeout.connect(self._fill_some)
        selection.changed.connect(lambda *_: self._timer.start())
        model.labels_changed.connect(lambda *_: self._refresh_captions())
        model.clustering_changed.connect(lambda *_: self._refresh_captions(predictions=True))
        model.label_set_changed.connect(self._fill_labels)
        self._fill_labels()
        self.rebuild()

    # ------------------------------------------------------------------ building
    def _fill_labels(self) -> None:
        cur = self.label_box.currentText()
        self.label_box.clear()
        self.label_box.addItems(self.model.label_names())
        if cur:
            self.label_box.setCurrentText(cur)

    def _resize_tiles(self, size: int) -> None:
        self.thumb_size = int(size)
        self.grid.setIconSize(QSize(self.thumb_size, self.thumb_size))
        self.grid.setGridSize(QSize(self.thumb_size + 16, self.thumb_size + 40))
        if self.shown:
            self.rebuild()

    def _predictions(self, refresh: bool = False) -> dict:
        if self._preds is None or refresh:
            from app.components.predictions import sample_predictions

            try:
                self._preds = sample_predictions(self.model)
            except Exception:  # noqa: BLE001 - no predictions is a valid state
                self._preds = {}
        return self._preds

    def sorted_ids(self, ids) -> list[str]:
        ids = [str(i) for i in ids]
        how = self.sort_box.currentText()
        if how == "distance to centre":
            emb = self.model.embedding()
            if emb is not None:
                d = centre_distances(ids, *emb)
                order = np.argsort(np.where(np.isnan(d), np.inf, d), kind="stable")
                return [ids[i] for i in order]
            return ids
        if how == "label":
            labels = self.model.labels()
            return sorted(ids, key=lambda s: (not labels.get(s), ", ".join(labels.get(s, [])), s))
        if how == "prediction":
            preds = self._predictions()
            return sorted(ids, key=lambda s: (not (preds.get(s) and preds[s].labels),
                                              preds[s].text if preds.get(s) else "", s))
        return sorted(ids)

    def rebuild(self) -> None:
        self._filler.stop()
        self.grid.clear()
        ids = list(self.selection.ids)
        if not ids:
            self.shown = []
            self.header.setText("select samples (lasso, cluster, table) to see them here")
            return
        self._predictions(refresh=True)
        order = self.sorted_ids(ids)
        self.shown = order[:MAX_TILES]
        more = f" (first {len(self.shown)} of {len(ids)}; sort to see others first)" if len(ids) > len(self.shown) else ""
        self.header.setText(f"<b>{len(ids)}</b> selected · sorted by {self.sort_box.currentText()}{more}")
        blank = QIcon(_placeholder(self.thumb_size))
        for sid in self.shown:
            item = QListWidgetItem(blank, self._caption(sid))
            item.setData(Qt.UserRole, sid)
            item.setToolTip(sid)
            item.setTextAlignment(Qt.AlignHCenter | Qt.AlignTop)
            self.grid.addItem(item)
        self._pending = list(range(len(self.shown)))
        self._filler.start()

    def _caption(self, sid: str) -> str:
        lab = ", ".join(self.model.labels().get(sid, [])) or "unlabelled"
        p = (self._preds or {}).get(sid)
        pred = p.text if p is not None and p.labels else "—"
        organ = self.model.structure_name(sid)
        return (f"{organ}: " if organ else "") + f"{lab}\n→ {pred}"

    def _refresh_captions(self, predictions: bool = False) -> None:
        if predictions:
            self._predictions(refresh=True)
        for i in range(self.grid.count()):
            item = self.grid.item(i)
            item.setText(self._caption(item.data(Qt.UserRole)))

    def _fill_some(self) -> None:
        for _ in range(BATCH):
            if not self._pending:
                self._filler.stop()
                self.filled.emit()
                return
            i = self._pending.pop(0)
            item = self.grid.item(i)
            if item is None:
                continue
            sid = item.data(Qt.UserRole)
            try:
                pm = _pixmap(self.model.thumbnail(sid, size=self.thumb_size), self.thumb_size)
            except Exception:  # noqa: BLE001 - a mesh-only sample or a missing file
                kind = self.model.samples.at[sid, "kind"] if sid in self.model.samples.index else ""
                pm = _placeholder(self.thumb_size, f"{kind or 'no'}\nimage")
            item.setIcon(QIcon(pm))

    def is_filled(self) -> bool:
        return not self._pending

    # ------------------------------------------------------------------ labelling
    def _number_key(self, ev):
        """While tiles are picked, keys 1-9 give *those* tiles the label (as the Apply button
        does); the window's same keys would label the whole selection, every tile shown."""
        k = ev.key() - Qt.Key_0
        names = self.model.label_names()
        picked = self.picked_ids()
        if 1 <= k <= min(9, len(names)) and picked:
            return lambda: self.apply_label(names[k - 1], picked)
        return None

    def picked_ids(self) -> list[str]:
        return [it.data(Qt.UserRole) for it in self.grid.selectedItems()]

    def pick(self, ids) -> None:
        want = set(ids)
        for i in range(self.grid.count()):
            it = self.grid.item(i)
            it.setSelected(it.data(Qt.UserRole) in want)

    def apply_label(self, name: str, ids) -> int:
        """Give ``ids`` the label ``name`` (as their only label on single-label data, added
        otherwise); samples that have it keep it. Returns how many changed."""
        name = (name or "").strip()
        ids = list(ids)
        if not name or not ids:
            return 0
        if name not in self.model.label_names():
            hits = [n for n in self.model.label_names() if name.lower() in n.lower()]
            if len(hits) != 1:
                self.header.setText(f"no single label matches '{name}'")
                return 0
            name = hits[0]
        labels = self.model.project.labels(ids)
        lacking = [i for i in ids if name not in labels.get(i, ())]
        if not lacking:
            return 0
        single = all(len(v) <= 1 for v in self.model.labels().values())
        if single:
            return self.model.replace_label(lacking, name)
        return self.model.set_label(lacking, name, True)

    def _show_one(self, item) -> None:
        sid = item.data(Qt.UserRole)
        if sid in self.selection:
            self.selection.set_current(sid)
