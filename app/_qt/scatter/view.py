"""ScatterView: the latent-space scatter, linked to the shared Selection and ColourBy models.

Rendering switches on how many points are in view: above ``marker_threshold`` the visible
points are rasterised to one image (``raster.rasterise``, recomputed for the visible range at
most every ``render_interval_ms`` while the view moves); below it they are real pyqtgraph
markers. Both show selected points over faded unselected ones, and the current sample ringed.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from app._qt.keys import ClaimKeys
from app.components.colour import ColourBy
from app.components.selection import ADD, REPLACE, SUBTRACT, Selection

from . import _kernels
from .hover import HoverCard
from .legend import ScatterLegend
from .palette import Coding, code_values
from .picking import NearestPicker, box_hits, lasso_hits
from .raster import PointIndex, rasterise

TOOLS = ("pan", "lasso", "box")


def mode_for(modifiers) -> str:
    """Shift adds to the selection, Ctrl or Alt subtracts, otherwise the selection is replaced."""
    mods = QtCore.Qt.KeyboardModifier(modifiers) if not isinstance(modifiers, QtCore.Qt.KeyboardModifier) else modifiers
    if mods & QtCore.Qt.ShiftModifier:
        return ADD
    if mods & (QtCore.Qt.ControlModifier | QtCore.Qt.AltModifier | QtCore.Qt.MetaModifier):
        return SUBTRACT
    return REPLACE


class _RasterItem(pg.GraphicsObject):
    """Draws one premultiplied ARGB32 image into a rectangle of data coordinates."""

    def __init__(self):
        super().__init__()
        self._img: QtGui.QImage | None = None
        self._buf = None
        self._rect = QtCore.QRectF()

    def set_image(self, argb: np.ndarray | None, rect=None) -> None:
        """``argb``: (H, W) uint32 premultiplied ARGB32 words, row 0 at the rect's y0."""
        self.prepareGeometryChange()
        if argb is None:
            self._img, self._buf = None, None
        else:
            h, w = argb.shape
            self._buf = np.ascontiguousarray(argb)  # QImage does not own the buffer: keep it alive
            self._img = QtGui.QImage(self._buf.data, w, h, w * 4, QtGui.QImage.Format_ARGB32_Premultiplied)
            x0, y0, x1, y1 = rect
            self._rect = QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)
        self.update()

    def boundingRect(self):
        return QtCore.QRectF(self._rect) if self._img is not None else QtCore.QRectF()

    def paint(self, p, *args):
        if self._img is not None:
            p.setRenderHint(QtGui.QPainter.SmoothPixmapTransform, False)
            # row 0 holds the lowest y; the view's y axis points up, so no flip is needed
            p.drawImage(self._rect, self._img)


class _Markers(pg.ScatterPlotItem):
    """Markers that leave clicks to the view box (pyqtgraph's would accept a click on a marker
    and the view's nearest-point selection would never see it)."""

    def mouseClickEvent(self, ev):
        ev.ignore()


class _MarkerLayer:
    """Markers grouped by colour, one ScatterPlotItem per colour in view: pyqtgraph is quick with
    one brush per item and slow with a brush per point (0.6 s for 20k points here)."""

    def __init__(self, vb, z, **style):
        self.vb, self.z, self.style = vb, z, style
        self.items: list[_Markers] = []

    def set(self, x, y, groups, brushes) -> None:
        order = np.argsort(groups, kind="stable")
        g = groups[order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(g)].astype(int)
        while len(self.items) < len(starts):
            it = _Markers(pxMode=True, antialias=True, **self.style)
            it.setZValue(self.z)
            self.vb.addItem(it, ignoreBounds=True)
            self.items.append(it)
        for it, a, b in zip(self.items, starts, ends):
            idx = order[a:b]
            it.setData(x=x[idx], y=y[idx], brush=brushes[int(g[a])])
        for it in self.items[len(starts):]:
            it.clear()

    def clear(self) -> None:
        for it in self.items:
            it.clear()

    def count(self) -> int:
        return sum(len(it.data) for it in self.items)


class _ViewBox(pg.ViewBox):
    """Left drag runs the active tool (pan, lasso, box); middle drag always pans; wheel zooms."""

    def __init__(self, owner: "ScatterView"):
        super().__init__(enableMenu=False)
        self._owner = owner

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == QtCore.Qt.LeftButton and self._owner.tool in ("lasso", "box"):
            ev.accept()
            self._owner._drag_event(ev)
            return
        super().mouseDragEvent(ev, axis)   # pan (left in the pan tool, middle always)

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self._owner.click_at(p.x(), p.y(), mode_for(ev.modifiers()))
            return
        super().mouseClickEvent(ev)


class ScatterView(QtWidgets.QWidget):
    """Latent scatter of one projection ("pca" or "umap") of the active run.

    ``model`` may be None: then points and colours come only from :meth:`set_points` and
    :meth:`set_colours` (benchmarks, tests, embedding elsewhere).
    """

    #: markers (not the raster) when at most this many points are in view
    marker_threshold = 20_000
    #: rasterise at half resolution (2x2 screen pixels per cell) above this many visible points
    coarse_threshold = 50_000
    #: the raster covers this fraction of the view size beyond each edge, so short pans show
    #: points at once, before the next raster is ready
    raster_pad = 0.1
    render_interval_ms = 30
    hover_interval_ms = 40
    hover_radius_px = 8.0
    #: compute a missing UMAP in the background when it is asked for (PCA shows meanwhile)
    auto_umap = True

    def __init__(self, model=None, selection: Selection | None = None, colour: ColourBy | None = None,
                 parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection if selection is not None else Selection()
        self.colour = colour if colour is not None else ColourBy()
        self.projection_kind = "pca"
        self.tool = "pan"
        self.render_mode = "empty"          # "raster" | "markers" | "empty"
        self.last_render_ms = 0.0
        self.hover_text = ""
        self.hover_id: str | None = None

        self._index = PointIndex(np.zeros((0, 2)))
        self._ids = np.zeros(0, dtype=object)       # in sorted (x) order
        self._id_lookup = None                      # pandas Index over self._ids, built lazily
        self._coding: Coding | None = None
        self._sel = np.zeros(0, bool)
        self._n_selected = 0
        self._expected: tuple | None = None         # (mode, hits) of our own pending select()
        self._picker: NearestPicker | None = None
        self._thumbs: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._brushes: list = []
        self._marker_groups = np.zeros(0, np.int32)
        self._faded_brushes: list = []
        self._umap = None                           # the QtJob computing the UMAP, while it runs
        self._drag_path: list[tuple[float, float]] = []
        self._drawn = None                          # (data rect drawn, view span, widget size)
        self.last_drag = np.zeros((0, 2))           # the last lasso or box, in data coordinates

        # compiles (first run) or loads the fused raster kernels, off-thread, once the window has
        # painted: importing numba (and scipy) competes for the GIL with the start-up otherwise
        from app._qt.after_paint import after_first_paint

        after_first_paint(_kernels.warm)
        self._build_ui()
        self._connect_models()
        if model is not None:
            self._refresh_columns()
            self._load_projection()

    # ================================================================== UI
    def _build_ui(self):
        self.plot = pg.PlotWidget(viewBox=_ViewBox(self), background="w")
        self.plot.setMouseTracking(True)
        self.plot.hideButtons()
        self.plot.getPlotItem().hideAxis("left")
        self.plot.getPlotItem().hideAxis("bottom")
        self.plot.getPlotItem().setContentsMargins(0, 0, 0, 0)
        self.vb: _ViewBox = self.plot.getViewBox()
        self.vb.setDefaultPadding(0.02)

        self._raster = _RasterItem()
        self._raster.setZValue(0)
        self.vb.addItem(self._raster, ignoreBounds=True)
        self._markers = _MarkerLayer(self.vb, 1, size=6, pen=None)
        self._sel_markers = _MarkerLayer(self.vb, 2, size=7, pen=pg.mkPen(30, 30, 30, 220, width=1))
        self._current_item = _Markers(pxMode=True, size=17, brush=None, antialias=True,
                                                pen=pg.mkPen(0, 0, 0, 255, width=2.5))
        self._current_item.setZValue(3)
        self.vb.addItem(self._current_item, ignoreBounds=True)
        # an invisible item with the data bounds, so autoRange frames the points
        self._bounds_item = pg.PlotDataItem([], [], pen=None)
        self.vb.addItem(self._bounds_item)

        pen = pg.mkPen(20, 20, 20, 230, width=1.5, style=QtCore.Qt.DashLine)
        pen.setCosmetic(True)
        self._lasso_item = QtWidgets.QGraphicsPathItem()
        self._lasso_item.setPen(pen)
        self._lasso_item.setZValue(10)
        self._box_item = QtWidgets.QGraphicsRectItem()
        self._box_item.setPen(pen)
        self._box_item.setBrush(QtGui.QBrush(QtGui.QColor(60, 120, 220, 40)))
        self._box_item.setZValue(10)
        for it in (self._lasso_item, self._box_item):
            it.hide()
            self.vb.addItem(it, ignoreBounds=True)

        self._message = pg.TextItem("", color=(90, 90, 90), anchor=(0.5, 0.5))
        self._message.setParentItem(self.vb)
        self._message.hide()

        # toolbar
        self.colour_combo = QtWidgets.QComboBox()
        self.colour_combo.setToolTip("Colour points by")
        self.colour_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToContents)
        self.colour_combo.currentTextChanged.connect(self._colour_combo_changed)
        self.projection_combo = QtWidgets.QComboBox()
        self.projection_combo.addItems(["PCA", "UMAP"])
        self.projection_combo.setToolTip("2D projection of the embedding")
        self.projection_combo.currentTextChanged.connect(lambda t: self.set_projection_kind(t.lower()))
        self._tool_buttons = {}
        group = QtWidgets.QButtonGroup(self)
        tips = {"pan": "Pan (drag) and zoom (wheel)  [P]",
                "lasso": "Lasso select; Shift adds, Ctrl/Alt subtracts  [L]",
                "box": "Box select; Shift adds, Ctrl/Alt subtracts  [B]"}
        for name in TOOLS:
            b = QtWidgets.QToolButton()
            b.setText(name.capitalize())
            b.setCheckable(True)
            b.setToolTip(tips[name])
            b.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            group.addButton(b)
            self._tool_buttons[name] = b
        self._tool_buttons["pan"].setChecked(True)
        reset = QtWidgets.QToolButton()
        reset.setText("Reset")
        reset.setToolTip("Show all points  [R]")
        reset.clicked.connect(self.reset_view)
        self.status = QtWidgets.QLabel("")
        self.status.setStyleSheet("color: #555")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(90)
        self.progress.setMaximumHeight(14)
        self.progress.hide()

        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(2, 2, 2, 2)
        colour_label = QtWidgets.QLabel("Colour")
        bar.addWidget(colour_label)
        bar.addWidget(self.colour_combo)
        bar.addWidget(self.projection_combo)
        for b in self._tool_buttons.values():
            bar.addWidget(b)
        bar.addWidget(reset)
        bar.addWidget(self.progress)
        bar.addStretch(1)
        bar.addWidget(self.status)
        if self.model is None:  # colours and points come from set_colours / set_points
            for w in (colour_label, self.colour_combo, self.projection_combo):
                w.hide()

        self.legend = ScatterLegend()
        self.legend.category_clicked.connect(self._legend_clicked)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.legend)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([800, 170])

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(split, 1)

        self.hover_card = HoverCard(self.plot)

        self._render_timer = QtCore.QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(self.render_interval_ms)
        self._render_timer.timeout.connect(self._render)
        self._hover_timer = QtCore.QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(self.hover_interval_ms)
        self._hover_timer.timeout.connect(self._hover_fire)
        self._hover_scene_pos = None

        self.vb.sigRangeChanged.connect(self._schedule_render)
        self.vb.sigResized.connect(self._schedule_render)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)
        self.plot.viewport().installEventFilter(self)
        # The plot's own keys, claimed while it has the focus (app/_qt/keys.py): the window binds
        # L (search labels) and Esc (clear selection) too. key -> (what it does, action)
        self.plot_keys = {QtCore.Qt.Key_L: ("Lasso tool", lambda: self.set_tool("lasso")),
                          QtCore.Qt.Key_B: ("Box tool", lambda: self.set_tool("box")),
                          QtCore.Qt.Key_P: ("Pan tool", lambda: self.set_tool("pan")),
                          QtCore.Qt.Key_R: ("Show all points", self.reset_view),
                          QtCore.Qt.Key_Escape: ("Cancel the lasso or box being drawn", self._cancel_drag)}
        self._claimed_keys = ClaimKeys(self.plot, self._plot_key)
        self.resize(980, 680)

    def _plot_key(self, ev):
        """The action of a plain key press the plot takes (None: leave it to the window).
        Esc is the plot's only while a lasso or box is being drawn; otherwise it clears the
        selection, as everywhere else."""
        if ev.key() == QtCore.Qt.Key_Escape and not self._drag_path:
            return None
        return self.plot_keys.get(ev.key(), (None, None))[1]

    def eventFilter(self, obj, ev):
        if ev.type() == QtCore.QEvent.Leave:
            self._hover_timer.stop()
            self.hover_card.hide()
        return False

    # ================================================================== models
    def _connect_models(self):
        self._connections = [
            (self.selection.changed, self._on_selection_changed),
            (self.selection.current_changed, self._on_current_changed),
            (self.colour.changed, self._on_colour_changed),
        ]
        if self.model is not None:
            m = self.model
            self._connections += [
                (m.projection_changed, self._on_projection_changed),
                (m.run_changed, self._on_run_changed),
                (m.samples_changed, self._on_samples_changed),
                (m.labels_changed, self._on_labels_changed),
                (m.clustering_changed, self._on_clustering_changed),
            ]
            if hasattr(m, "dev_changed"):
                self._connections.append((m.dev_changed, self._on_dev_changed))
        for sig, slot in self._connections:
            sig.connect(slot)
        conns = list(self._connections)
        # psygnal would keep calling into a deleted widget: drop our slots with it
        self.destroyed.connect(lambda *_: [sig.disconnect(slot) for sig, slot in conns])

    def disconnect_models(self) -> None:
        for sig, slot in self._connections:
            try:
                sig.disconnect(slot)
            except Exception:
                pass
        self._connections = []

    def _on_selection_changed(self, ids):
        self._sync_selection(ids)
        self._update_current_marker()
        self._render()

    def _on_current_changed(self, _id):
        self._update_current_marker()

    def _on_colour_changed(self, column):
        if self.colour_combo.currentText() != column:
            self.colour_combo.blockSignals(True)
            if self.colour_combo.findText(column) < 0:
                self.colour_combo.addItem(column)
            self.colour_combo.setCurrentText(column)
            self.colour_combo.blockSignals(False)
        self.recolour()

    def _on_projection_changed(self, kind):
        if kind == self.projection_kind:
            self._load_projection()

    def _on_run_changed(self, _run):
        self._load_projection()

    def _on_samples_changed(self):
        self._refresh_columns()
        self._load_projection()

    def _on_labels_changed(self, _ids):
        if self.colour.column in ("label", "predicted"):
            self.recolour()

    def _on_clustering_changed(self, _name):
        if self.colour.column in ("cluster", "predicted"):
            self.recolour()

    def _on_dev_changed(self, _ids):
        if self.colour.column == "dev":
            self.recolour()

    def _refresh_columns(self):
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        cols = list(self.model.columns()) if self.model is not None else []
        if self.colour.column not in cols:
            cols.append(self.colour.column)
        self.colour_combo.addItems(cols)
        self.colour_combo.setCurrentText(self.colour.column)
        self.colour_combo.blockSignals(False)

    def _colour_combo_changed(self, text):
        if text and text != self.colour.column:
            self.colour.column = text     # -> colour.changed -> recolour

    # ================================================================== data
    def set_points(self, ids, xy, *, keep_view: bool = False) -> None:
        """Show points ``xy`` (n, 2) for sample ``ids``; colours reset to the colour column (or uniform)."""
        ids = np.asarray(ids, dtype=object).ravel()
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(ids):
            raise ValueError(f"set_points: need ids (n,) and xy (n, 2); got {ids.shape} and {xy.shape}")
        self._index = PointIndex(xy)
        self._ids = ids[self._index.order]
        self._id_lookup = None
        self._picker = NearestPicker(self._index) if len(ids) else None
        if len(ids) > 50_000:  # the first click or external selection should not wait for it
            threading.Thread(target=self._build_lookup, daemon=True, name="scatter-ids").start()
        self._sel = np.zeros(len(ids), bool)
        self._n_selected = 0
        self.hover_card.hide()
        self._message.hide()
        if self.model is not None:
            self.recolour(render=False)
        else:
            self._apply_coding(code_values(np.zeros(len(ids), dtype=object), True), title="")
        self._sync_selection(self.selection.ids)
        bx0, by0, bx1, by1 = self._index.bounds
        self._bounds_item.setData([bx0, bx1], [by0, by1])
        if not keep_view:
            self.reset_view()
        self._update_current_marker()
        self._render()

    @property
    def ids(self) -> np.ndarray:
        """Sample ids of the points, in the order given to :meth:`set_points`."""
        out = np.empty_like(self._ids)
        out[self._index.order] = self._ids
        return out

    @property
    def n_points(self) -> int:
        return len(self._ids)

    def set_colours(self, values, categorical: bool, *, title: str | None = None) -> None:
        """Colour by ``values`` (one per point, in :meth:`set_points` order)."""
        values = np.asarray(values)
        if len(values) != len(self._ids):
            raise ValueError(f"set_colours: {len(values)} values for {len(self._ids)} points")
        coding = code_values(values, categorical).reordered(self._index.order)
        self._apply_coding(coding, title=self.colour.column if title is None else title)
        self._render()

    def recolour(self, render: bool = True) -> None:
        """Fetch the colour column's values from the model and recolour."""
        if self.model is None or not len(self._ids):
            return
        try:
            values, categorical = self.model.column_values(self.colour.column, self._ids.tolist())
        except KeyError as exc:
            self._show_message(str(exc))
            return
        # asked in sorted order already: no reordering
        self._apply_coding(code_values(np.asarray(values), categorical), title=self.colour.column)
        if render:
            self._render()

    def _apply_coding(self, coding: Coding, title: str) -> None:
        self._coding = coding
        self.hover_card.hide()
        cols = coding.colours
        if not coding.categorical:
            # markers: 16 colour bins (and missing) are plenty for a few thousand points
            bins = len(cols) - 1
            self._marker_groups = np.minimum(coding.codes * 16 // bins, 16).astype(np.int32)
            cols = np.vstack([cols[np.minimum(np.arange(16) * bins // 16 + bins // 32, bins - 1)], cols[-1:]])
        else:
            self._marker_groups = coding.codes
        self._brushes = [pg.mkBrush(int(r), int(g), int(b), 235) for r, g, b in cols]
        self._faded_brushes = [pg.mkBrush(int(r * .45 + 140), int(g * .45 + 140), int(b * .45 + 140), 95)
                               for r, g, b in cols]
        self.legend.set_coding(title, coding if title or len(coding.names) > 1 else None)

    # ================================================================== projection
    def set_projection_kind(self, kind: str) -> None:
        kind = kind.lower()
        if kind not in ("pca", "umap"):
            raise ValueError(f"projection kind must be 'pca' or 'umap', got {kind!r}")
        self.projection_kind = kind
        if self.projection_combo.currentText().lower() != kind:
            self.projection_combo.blockSignals(True)
            self.projection_combo.setCurrentText(kind.upper())
            self.projection_combo.blockSignals(False)
        self._load_projection()

    def _load_projection(self):
        if self.model is None:
            return
        res = self.model.projection(self.projection_kind)
        if res is None and self.projection_kind == "umap":
            self._start_umap()
            res = self.model.projection("pca")
            if res is not None:
                self._set_model_points(*res)
                self._show_message("UMAP is being computed; showing PCA", corner=True)
                return
        if res is None:
            self.set_points(np.zeros(0, dtype=object), np.zeros((0, 2)))
            self._show_message("No projection yet: train a model and apply it to see the latent space")
            return
        self._set_model_points(*res)

    def _set_model_points(self, ids, xy):
        self.set_points(np.asarray(ids).astype(str).astype(object), np.asarray(xy)[:, :2])

    def _start_umap(self):
        """The active run's UMAP as a background job (``core.workflows.projections.umap_steps``
        through the app's one job runner); the model announces the stored projection."""
        from app._qt.jobs import run_steps

        if self._umap is not None or not self.auto_umap:
            return
        if self.model.embedding() is None:
            return
        job = run_steps(self.model.umap_steps, name="umap", parent=self)
        job.progress.connect(lambda p: (self.progress.setToolTip(p.message), self.progress.setFormat(p.message)))
        job.done.connect(self._umap_done)
        self._umap = job
        self.progress.show()
        job.start()

    def _umap_done(self, status):
        job, self._umap = self._umap, None
        self.progress.hide()
        if status == "failed" and job is not None:
            self._show_message(f"UMAP failed: {type(job.error).__name__}: {job.error}", corner=True)
        elif status == "finished" and self.model is not None:
            self.model.projection_stored("umap")  # -> projection_changed("umap") -> reload

    def _show_message(self, text, corner=False):
        self._message.setText(text)
        self._message.setAnchor((0, 0) if corner else (0.5, 0.5))
        r = self.vb.boundingRect()
        self._message.setPos(8, 8) if corner else self._message.setPos(r.center())
        self._message.show()

    # ================================================================== view
    def set_tool(self, name: str) -> None:
        if name not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {name!r}")
        self.tool = name
        self._tool_buttons[name].setChecked(True)

    def reset_view(self) -> None:
        if len(self._ids):
            bx0, by0, bx1, by1 = self._index.bounds
            w, h = max(bx1 - bx0, 1e-9), max(by1 - by0, 1e-9)
            self.vb.setRange(xRange=(bx0 - 0.03 * w, bx1 + 0.03 * w), yRange=(by0 - 0.03 * h, by1 + 0.03 * h),
                             padding=0)
        else:
            self.vb.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)

    def _schedule_render(self, *_):
        self.hover_card.hide()   # it points at where the point was
        if self._still_covered():
            return
        # throttle, not debounce: during a drag the raster follows every render_interval_ms
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _still_covered(self) -> bool:
        """Whether what is drawn is still exact for the view: a pan that stays inside the padded
        area drawn last time, at the same zoom and widget size, needs no new raster or markers."""
        if self._drawn is None:
            return False
        (x0, x1), (y0, y1) = self.vb.viewRange()
        (dx0, dy0, dx1, dy1), span, size = self._drawn
        same_zoom = np.allclose((x1 - x0, y1 - y0), span, rtol=1e-9, atol=0)
        return (same_zoom and size == self._screen_size()
                and dx0 <= x0 and x1 <= dx1 and dy0 <= y0 and y1 <= dy1)

    def flush(self, force: bool = False) -> None:
        """Render now if a render is pending (or always, with ``force``): tests and benchmarks."""
        if force or self._render_timer.isActive():
            self._render()

    def _screen_size(self) -> tuple[int, int]:
        dpr = self.plot.devicePixelRatioF() if hasattr(self.plot, "devicePixelRatioF") else 1.0
        return max(1, int(self.vb.width() * dpr)), max(1, int(self.vb.height() * dpr))

    def _px_per_unit(self) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.vb.viewRange()
        return self.vb.width() / max(x1 - x0, 1e-300), self.vb.height() / max(y1 - y0, 1e-300)

    def _render(self):
        self._render_timer.stop()
        t0 = time.perf_counter()
        n = len(self._ids)
        if n == 0:
            self._drawn = None
            self._raster.set_image(None)
            self._markers.clear(); self._sel_markers.clear()
            self.render_mode = "empty"
            self._update_status()
            return
        (x0, x1), (y0, y1) = self.vb.viewRange()
        W, H = self._screen_size()
        n_vis = self._index.count_visible((x0, y0, x1, y1))
        cell = 2 if n_vis > self.coarse_threshold else 1
        # a coarse raster is cheap per pixel: draw a wider margin so longer pans need no redraw
        pad = self.raster_pad * (2.5 if cell == 2 else 1.0)
        pw, ph = (x1 - x0) * pad, (y1 - y0) * pad
        rect = (x0 - pw, y0 - ph, x1 + pw, y1 + ph)
        self._drawn = (rect, (x1 - x0, y1 - y0), (W, H))
        if n_vis <= self.marker_threshold:
            self._raster.set_image(None)
            self._render_markers(rect)
            self.render_mode = "markers"
        else:
            self._markers.clear(); self._sel_markers.clear()
            shape = (max(1, int(round(H * (1 + 2 * pad) / cell))),
                     max(1, int(round(W * (1 + 2 * pad) / cell))))
            lo, hi, m = self._index.visible(rect)
            sl = slice(lo, hi)
            x, y, codes, sel = self._index.x[sl], self._index.y[sl], self._coding.codes[sl], self._sel[sl]
            if m is not None:
                x, y, codes, sel = x[m], y[m], codes[m], sel[m]
            img = rasterise(x, y, codes, self._coding.colours, rect, shape,
                            selected=sel if self._fading else None, spread=0 if cell == 2 else 1)
            self._raster.set_image(img, rect)
            self.render_mode = "raster"
        self.last_render_ms = (time.perf_counter() - t0) * 1e3
        self._update_status()

    @property
    def _fading(self) -> bool:
        # One selected sample is the current one, already ringed: fading all the others for it
        # would wash out the map the user is reading.
        return self._n_selected > 1

    def _render_markers(self, rect):
        idx = self._index.visible_indices(rect)
        groups = self._marker_groups[idx]
        sel = self._sel[idx]
        x, y = self._index.x[idx], self._index.y[idx]
        if self._fading:
            un = ~sel
            self._markers.set(x[un], y[un], groups[un], self._faded_brushes)
            self._sel_markers.set(x[sel], y[sel], groups[sel], self._brushes)
        else:
            self._markers.set(x, y, groups, self._brushes)
            self._sel_markers.clear()

    def _update_status(self):
        self.status.setText(f"{len(self._ids):,} points · {self._n_selected:,} selected")

    # ================================================================== selection
    def _build_lookup(self):
        import pandas as pd

        ids = self._ids
        lookup = pd.Index(ids, dtype=object)
        lookup.get_indexer(pd.Index(ids[:1], dtype=object))   # builds the hash table now
        if ids is self._ids:                                    # not replaced meanwhile
            self._id_lookup = lookup

    def _positions(self, ids) -> np.ndarray:
        """Sorted-order positions of ``ids`` (those not shown here are dropped)."""
        import pandas as pd

        if self._id_lookup is None:
            self._build_lookup()
        # object dtype on both sides: pandas would otherwise infer its arrow string dtype and
        # look ids up several times slower
        pos = self._id_lookup.get_indexer(pd.Index(list(ids), dtype=object))
        return pos[pos >= 0]

    def _sync_selection(self, ids):
        n = len(self._ids)
        exp, self._expected = self._expected, None
        if exp is not None:
            # our own select(): the new mask follows from the hits without looking up every id
            mode, hits = exp
            sel = np.zeros(n, bool) if mode == REPLACE else self._sel.copy()
            sel[hits] = mode != SUBTRACT
            if int(sel.sum()) == len(ids):
                self._sel, self._n_selected = sel, len(ids)
                return
        sel = np.zeros(n, bool)
        if len(ids) and n:
            sel[self._positions(ids)] = True
        self._sel, self._n_selected = sel, int(sel.sum())

    def _apply_hits(self, hits: np.ndarray, mode: str, current: str | None = None) -> list[str]:
        hits = np.asarray(hits, dtype=np.intp)
        ids = self._ids[hits].tolist()
        self._expected = (mode, hits)
        try:
            self.selection.select(ids, mode=mode, current=current)
        finally:
            self._expected = None
        return ids

    def lasso_select(self, polygon, mode: str = REPLACE) -> list[str]:
        """Select the points inside ``polygon`` ((k, 2) data coordinates); returns their ids."""
        return self._apply_hits(lasso_hits(self._index, polygon), mode)

    def box_select(self, rect, mode: str = REPLACE) -> list[str]:
        """Select the points in ``rect``: (x0, y0, x1, y1) in data coordinates or a QRectF."""
        if isinstance(rect, QtCore.QRectF):
            rect = (rect.left(), rect.top(), rect.right(), rect.bottom())
        return self._apply_hits(box_hits(self._index, rect), mode)

    def select_category(self, name: str, mode: str = REPLACE) -> list[str]:
        """Select every point of a legend category."""
        if self._coding is None or not self._coding.categorical or name not in self._coding.names:
            return []
        k = self._coding.names.index(name)
        return self._apply_hits(np.flatnonzero(self._coding.codes == k), mode)

    def _legend_clicked(self, name, modifiers):
        self.select_category(name, mode_for(modifiers))

    def nearest(self, x: float, y: float, radius_px: float | None = None) -> str | None:
        """Id of the point nearest to data position (x, y) within ``radius_px`` screen pixels."""
        i = self._nearest_pos(x, y, radius_px)
        return None if i is None else str(self._ids[i])

    def _nearest_pos(self, x, y, radius_px=None):
        if self._picker is None:
            return None
        return self._picker.nearest(x, y, self._px_per_unit(), radius_px or self.hover_radius_px)

    def click_at(self, x: float, y: float, mode: str = REPLACE) -> str | None:
        """A click at data position (x, y): the nearest point becomes current (and selected;
        Shift adds it, Ctrl/Alt removes it). A click on empty space clears the selection."""
        i = self._nearest_pos(x, y)
        if i is None:
            if mode == REPLACE:
                self.selection.clear()
            return None
        sid = str(self._ids[i])
        if mode == SUBTRACT:
            self._apply_hits(np.array([i]), SUBTRACT)
        else:
            self._apply_hits(np.array([i]), mode, current=sid)
            self.selection.set_current(sid)
        return sid

    def _update_current_marker(self):
        cur = self.selection.current
        if cur is None or not len(self._ids):
            self._current_item.clear()
            return
        pos = self._positions([cur])
        if not len(pos):
            self._current_item.clear()
            return
        i = int(pos[0])
        self._current_item.setData(x=[self._index.x[i]], y=[self._index.y[i]])

    # ================================================================== mouse
    def _drag_event(self, ev):
        p = self.vb.mapToView(ev.pos())
        if ev.isStart():
            start = self.vb.mapToView(ev.buttonDownPos())
            self._drag_path = [(start.x(), start.y())]
            self.hover_card.hide()
        self._drag_path.append((p.x(), p.y()))
        if self.tool == "lasso":
            path = QtGui.QPainterPath(QtCore.QPointF(*self._drag_path[0]))
            for q in self._drag_path[1:]:
                path.lineTo(QtCore.QPointF(*q))
            path.closeSubpath()
            self._lasso_item.setPath(path)
            self._lasso_item.show()
        else:
            (ax, ay), (bx, by) = self._drag_path[0], self._drag_path[-1]
            self._box_item.setRect(QtCore.QRectF(QtCore.QPointF(min(ax, bx), min(ay, by)),
                                                 QtCore.QPointF(max(ax, bx), max(ay, by))))
            self._box_item.show()
        if ev.isFinish():
            mode = mode_for(ev.modifiers())
            path, self._drag_path = self._drag_path, []
            self.last_drag = np.asarray(path)
            self._lasso_item.hide()
            self._box_item.hide()
            if self.tool == "lasso":
                self.lasso_select(path, mode)
            else:
                (ax, ay), (bx, by) = path[0], path[-1]
                self.box_select((ax, ay, bx, by), mode)

    def _cancel_drag(self):
        self._drag_path = []
        self._lasso_item.hide()
        self._box_item.hide()

    def _mouse_moved(self, scene_pos):
        self._hover_scene_pos = scene_pos
        if not self._hover_timer.isActive():
            self._hover_timer.start()

    def _hover_fire(self):
        if self._hover_scene_pos is None or self._drag_path:
            return
        if not self.vb.sceneBoundingRect().contains(self._hover_scene_pos):
            self.hover_card.hide()
            return
        p = self.vb.mapSceneToView(self._hover_scene_pos)
        widget_pos = self.plot.mapFromScene(self._hover_scene_pos)
        self.hover_at(p.x(), p.y(), widget_pos)

    def hover_at(self, x: float, y: float, widget_pos: QtCore.QPoint | None = None) -> str | None:
        """Show the hover card for the point nearest to data (x, y); returns its text (or None)."""
        i = self._nearest_pos(x, y)
        if i is None:
            self.hover_card.hide()
            self.hover_text, self.hover_id = "", None
            return None
        sid = str(self._ids[i])
        lines = [sid]
        thumb = None
        if self.model is not None:
            labels = self.model.labels().get(sid, [])
            lines.append("labels: " + (", ".join(labels) if labels else "–"))
            thumb = self._thumbnail(sid)
        if self._coding is not None and self.legend.title and self.legend.title != "label":
            lines.append(f"{self.legend.title}: {self._coding.value_text(i)}")
        text = "\n".join(lines)
        self.hover_text, self.hover_id = text, sid
        if widget_pos is None:
            vp = self.vb.mapViewToScene(QtCore.QPointF(x, y))
            widget_pos = self.plot.mapFromScene(vp)
        self.hover_card.show_at(text, thumb, widget_pos)
        return text

    def _thumbnail(self, sid):
        if sid in self._thumbs:
            self._thumbs.move_to_end(sid)
            return self._thumbs[sid]
        try:
            t = self.model.thumbnail(sid, 64)
        except Exception:  # a sample without a readable array still gets its id and labels
            t = None
        self._thumbs[sid] = t
        if len(self._thumbs) > 256:
            self._thumbs.popitem(last=False)
        return t

    # ================================================================== session state
    def state(self) -> dict:
        """What to save with the session (JSON-able): projection, visible range, tool."""
        (x0, x1), (y0, y1) = self.vb.viewRange()
        return {"projection": self.projection_kind, "view": [x0, x1, y0, y1], "tool": self.tool}

    def restore_state(self, state: dict) -> None:
        if not state:
            return
        if state.get("projection") in ("pca", "umap") and state["projection"] != self.projection_kind:
            self.set_projection_kind(state["projection"])
        if state.get("tool") in TOOLS:
            self.set_tool(state["tool"])
        view = state.get("view")
        if view and len(view) == 4 and all(np.isfinite(view)):
            x0, x1, y0, y1 = map(float, view)
            self.vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    # ================================================================== output
    def grab_png(self, path) -> str:
        """Save the widget (plot, legend and toolbar) as a PNG; returns the path."""
        QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.LayoutRequest)
        self.flush()
        pm = self.grab()
        if not pm.save(str(path), "PNG"):
            raise OSError(f"could not write PNG {path}")
        return str(path)
