"""The current sample in an embedded napari viewer: 2D images, 3D volumes (slices or volume
rendering), CT window/level presets, and the sample's label map and residual heatmap as overlays.

Volumes with an image geometry (direction cosines) are shown in the radiological convention:
the array is reoriented (flips and a transpose only, no resampling) so that its axes run
(inferior, posterior, left) in LPS terms; then the axial view shows anterior at the top and the
patient's left on screen-right, the coronal view superior at the top and left on the right, the
sagittal view superior at the top and anterior on the left; orientation letters (A/P, R/L,
S/I) are drawn at the edges of the canvas. Axial, coronal and sagittal views are one click.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, \
    QWidget

from core.focus import structure_focus
from core.orientation import apply_transform, radiological_transform

#: name -> (window, level) in Hounsfield units
CT_PRESETS = {
    "soft tissue": (400, 40),
    "lung": (1500, -600),
    "bone": (2000, 300),
    "brain": (80, 40),
    "abdomen": (350, 50),
    "liver": (150, 30),
}
AUTO = "auto (1-99%)"
FULL = "full range"


def window_level_limits(window: float, level: float) -> tuple[float, float]:
    return level - window / 2.0, level + window / 2.0


def auto_limits(data: np.ndarray) -> tuple[float, float]:
    a = np.asarray(data)
    sub = a.ravel()[:: max(1, a.size // 200_000)]
    lo, hi = np.percentile(sub, [1, 99]) if sub.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(sub.min(initial=0)), float(sub.max(initial=1))
        if hi <= lo:
            hi = lo + 1.0
    return float(lo), float(hi)


#: view -> napari dims order (slider axis first) and the letters at (top, bottom, left, right)
VIEWS = {"axial": ((0, 1, 2), ("A", "P", "R", "L")),
         "coronal": ((1, 0, 2), ("S", "I", "R", "L")),
         "sagittal": ((2, 0, 1), ("S", "I", "A", "P"))}


def array_scale(geometry: dict | None, ndim: int):
    """Voxel size in array axis order. The importer records it as ``array_spacing``; a plain
    ``spacing`` follows SimpleITK (x, y, z) while arrays are stored (z, y, x), so it is reversed."""
    g = geometry if isinstance(geometry, dict) else {}
    for key, flip in (("array_spacing", False), ("spacing_array", False), ("spacing", True)):
        sp = g.get(key)
        if sp is None or len(sp) != ndim:
            continue
        try:
            sp = [float(s) for s in sp]
        except (TypeError, ValueError):
            continue
        if all(s > 0 for s in sp):
            return tuple(reversed(sp)) if flip else tuple(sp)
    return None


class LazyPlaceholder(QLabel):
    """Stands in for a heavy view (napari, VTK) until its dock is first painted: then, once the
    event loop has drawn the window, it asks its owner to build the real view."""

    def __init__(self, text: str, build, parent=None):
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(80, 80)
        self._build = build
        self._asked = False

    def paintEvent(self, ev):
        super().paintEvent(ev)
        if not self._asked:
            self._asked = True
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._build)


class ImageView(QWidget):
    """Follows ``selection.current``; ``shown(id)`` after each sample is displayed."""

    shown = Signal(object)

    def __init__(self, model, selection, parent=None, *, lazy: bool = False):
        """With ``lazy``, napari is imported and its viewer built only once this view has been
        painted (its placeholder shown in a visible dock), on first use of ``viewer`` or by
        ``realise()``: the main window paints without paying for napari first."""
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.sample_id: str | None = None
        self._viewer = None
        self._qt_viewer = None
        self._pending_sample = None
        self._pending_state: dict | None = None
        self._residual_cache: dict[str, tuple[float, dict]] = {}
        # fit the view to the canvas again on resize until the user zooms or pans themselves
        self._autofit = True
        self._fitting = False

        self.preset = QComboBox(self)
        self.preset.addItems([AUTO, FULL, *[f"CT {k} (W{w} L{l})" for k, (w, l) in CT_PRESETS.items()]])
        self.preset.setToolTip("Window/level: CT presets in Hounsfield units")
        self.preset.currentIndexChanged.connect(self._apply_window)
        self.mode3d = QPushButton("3D", self)
        self.mode3d.setCheckable(True)
        self.mode3d.setToolTip("Volume rendering (on) or slices (off)")
        self.mode3d.toggled.connect(self._set_3d)
        self.show_mask = QCheckBox("label map", self)
        self.show_mask.setChecked(True)
        self.show_mask.toggled.connect(lambda on: self._set_visible("labels", on))
        self.show_residual = QCheckBox("residual", self)
        self.show_residual.setChecked(True)
        self.show_residual.toggled.connect(lambda on: self._set_visible("residual", on))
        self.view_box = QComboBox(self)
        self.view_box.addItems(list(VIEWS))
        self.view_box.setToolTip("Plane shown (radiological convention from the image geometry)")
        self.view_box.currentTextChanged.connect(self.set_view)
        self._tf = None
        self._focus = None  # a structure sample's largest cross-sections (display axes), else None
        self._markers = {}
        for side in ("top", "bottom", "left", "right"):
            m = QLabel("", self)
            m.setObjectName(f"orientation-{side}")
            m.setStyleSheet("color: #ffd54f; font-weight: bold; font-size: 12pt; background: transparent")
            m.setAttribute(Qt.WA_TransparentForMouseEvents, True)
            m.hide()
            self._markers[side] = m
        self.info = QLabel("no sample selected", self)
        # long ids must not widen the dock (and the window past the screen): elide instead
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("W/L", self))
        bar.addWidget(self.preset)
        bar.addWidget(self.view_box)
        bar.addWidget(self.mode3d)
        bar.addWidget(self.show_mask)
        bar.addWidget(self.show_residual)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(bar)
        self._layout = lay
        self._placeholder = None
        if lazy:
            self._placeholder = LazyPlaceholder("Loading the image viewer…", self.realise, self)
            lay.addWidget(self._placeholder, 1)
        else:
            self.realise()
        lay.addWidget(self.info)

        selection.current_changed.connect(self.show_sample)
        if selection.current:
            self.show_sample(selection.current)

    # ------------------------------------------------------------------ lazy napari
    @property
    def realised(self) -> bool:
        return self._viewer is not None

    def realise(self) -> None:
        """Build the napari viewer (once), then show the sample and state asked for meanwhile."""
        if self._viewer is not None:
            return
        from napari.components import ViewerModel
        from napari.qt import QtViewer

        self._viewer = ViewerModel(title="image")
        self._qt_viewer = QtViewer(self._viewer, show_welcome_screen=False)
        self.camera.events.zoom.connect(self._camera_moved)
        if self._placeholder is not None:
            self._layout.replaceWidget(self._placeholder, self._qt_viewer)
            self._placeholder.deleteLater()
            self._placeholder = None
        else:
            self._layout.insertWidget(1, self._qt_viewer, 1)
        if self.isVisible():
            self._qt_viewer.show()
        pending, self._pending_sample = self._pending_sample, None
        if pending is not None:
            self.show_sample(pending)
        st, self._pending_state = self._pending_state, None
        if st:
            self.restore(st)

    @property
    def viewer(self):
        self.realise()
        return self._viewer

    @property
    def qt_viewer(self):
        self.realise()
        return self._qt_viewer

    @property
    def camera(self):
        # napari >= 0.9 keeps the camera on the scene; older releases on the viewer
        scene = getattr(self.viewer, "scene", None)
        return scene.camera if scene is not None else self.viewer.camera

    # ------------------------------------------------------------------ display
    def layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def show_sample(self, sample_id) -> None:
        if self._viewer is None:  # lazy and not built yet: shown once the viewer exists
            self._pending_sample = sample_id
            self.sample_id = sample_id
            self.info.setText(f"{sample_id}: loading the image viewer…" if sample_id else "no sample selected")
            return
        if sample_id is None:
            self.viewer.layers.clear()
            self.sample_id = None
            self.info.setText("no sample selected")
            self.shown.emit(None)
            return
        try:
            self._show(sample_id)
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the app down
            try:
                self.viewer.layers.clear()
            except Exception:  # noqa: BLE001 - the message below matters more
                pass
            self.sample_id = sample_id
            self._show_markers(None)
            kind = self.model.samples.at[sample_id, "kind"] if sample_id in self.model.samples.index else ""
            if kind == "mesh" or isinstance(exc, KeyError):
                self.info.setText(f"{sample_id}: a {kind or 'shape'} sample without an image or volume: "
                                  "see it in the Mesh view")
            else:
                self.info.setText(f"{sample_id}: cannot show ({type(exc).__name__}: {exc})")
            self.shown.emit(sample_id)

    def _show(self, sample_id: str) -> None:
        row = self.model.samples.loc[sample_id]
        data = np.asarray(self.model.project.load_sample_array(sample_id))
        kind = row["kind"]
        rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and kind == "image2d"
        if data.ndim == 4 and not rgb:  # time/channel series: first frame
            data = data[0]
        spatial = data.ndim - (1 if rgb else 0)
        scale = array_scale(row["geometry"], spatial) or (1.0,) * spatial
        self._tf = None if rgb else radiological_transform(row["geometry"], spatial)
        if self._tf is not None:
            data = apply_transform(data, self._tf)
            scale = tuple(scale[a] for a in self._tf[0])
        old = self.layer("image")
        same_geometry = old is not None and old.data.shape == data.shape and old.rgb == rgb
        if not same_geometry:
            self.viewer.layers.clear()
            self._make_current()
            self.viewer.add_image(data, name="image", rgb=rgb, scale=scale,
                                  colormap="gray", interpolation2d="nearest", rendering="mip")
        else:
            old.data = data
            old.scale = scale
            for name in ("labels", "residual"):
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
        self._current_data = data
        self._current_kind = kind
        layer = self.layer("image")
        if spatial == 3 and not rgb:
            # a binary shape reads as a surface (iso); intensities as a maximum projection
            if kind == "mask":
                layer.rendering = "iso"
                layer.iso_threshold = float(data.max()) / 2 if data.size else 0.5
            else:
                layer.rendering = "mip"
        self._add_overlays(sample_id, data.shape[: spatial], scale)
        self.sample_id = sample_id
        self._apply_window()
        try:  # name the slider after the axis it moves, not napari's default "-3"
            self.viewer.dims.axis_labels = ("z", "y", "x")[-spatial:]
        except (ValueError, TypeError):
            pass
        can3d = spatial == 3
        self.mode3d.setEnabled(can3d)
        self.view_box.setEnabled(can3d)
        if can3d:
            self.viewer.dims.order = VIEWS[self.view_box.currentText()][0]
        self.viewer.dims.ndisplay = 3 if (can3d and self.mode3d.isChecked()) else 2
        if not same_geometry:
            self.fit()
            if spatial == 3:  # start on the middle slice, not the first (often empty) one
                self.viewer.dims.set_current_step(0, data.shape[0] // 2)
            if self.viewer.dims.ndisplay == 3:
                self._oblique()
        if self._focus is not None and spatial == 3:
            # a structure of the scan: open on it, even when the scan stays (liver -> kidney)
            for axis, index in enumerate(self._focus):
                self.viewer.dims.set_current_step(axis, index)
        self._show_markers(self.view_box.currentText() if (can3d and self._tf is not None
                                                            and self.viewer.dims.ndisplay == 2) else None)
        labels = ", ".join(self.model.labels().get(sample_id, [])) or "unlabelled"
        extra = [n for n in ("labels", "residual") if n in self.viewer.layers]
        self.info.setText(f"{sample_id} · {kind} {row['modality']} {'x'.join(map(str, data.shape))}"
                          + self._structure_size(sample_id, kind, row["geometry"], spatial)
                          + f" · {row['split'] or 'no split'} · {labels}"
                          + (f" · overlays: {', '.join(extra)}" if extra else ""))
        self.shown.emit(sample_id)

    def _make_current(self) -> None:
        """Make napari's GL context current before it creates layer visuals: VTK's view in the
        same window leaves its own (core-profile) context current, in which napari's GL
        capability queries fail."""
        try:
            self.qt_viewer.canvas._scene_canvas.set_current()
        except Exception:  # noqa: BLE001 - private API; without it napari still tries
            pass

    def _structure_size(self, sample_id, kind, geometry, spatial) -> str:
        """' · liver 1,043.2 ml' for a structure sample (its voxels times the voxel size; voxels
        alone when the scan has no spacing), else ''."""
        layer = self.layer("labels")
        if kind != "structure" or layer is None:
            return ""
        n = int(np.count_nonzero(layer.data))
        name = self.model.structure_name(sample_id) or "structure"
        spacing = array_scale(geometry, spatial)
        if spacing is None:
            return f" · {name} {n:,} voxels"
        return f" · {name} {n * float(np.prod(spacing)) / 1000.0:,.1f} ml"

    def _add_overlays(self, sample_id, shape, scale) -> None:
        self._focus = None
        row = self.model.samples.loc[sample_id]
        mf = row.get("mask_file")
        # a shape mask's "label map" is the mask itself: an overlay would only hide it
        same = mf == row.get("data_file") and row.get("mask_index") == row.get("data_index")
        if isinstance(mf, str) and mf and not same:
            try:
                mask = np.asarray(self.model.project.load_sample_array(sample_id, mask=True))
                # a structure of a scan's label map: the scan with only that structure highlighted
                value = (row.get("metadata") or {}).get("label_value") if row.get("kind") == "structure" else None
                if value is not None:
                    mask = np.where(mask == int(value), mask, 0)
                mask = apply_transform(mask, self._tf)
                if value is not None and mask.shape == tuple(shape):
                    self._focus = structure_focus(mask)
                if mask.shape == tuple(shape):
                    self._make_current()
                    layer = self.viewer.add_labels(mask.astype(np.int32), name="labels", scale=scale,
                                                   opacity=0.45)
                    layer.visible = self.show_mask.isChecked()
            except (KeyError, OSError, ValueError):
                pass
        res = self.residual(sample_id)
        if res is not None and self._tf is not None and res.ndim == 3:
            res = apply_transform(res, self._tf)
        if res is not None and res.shape == tuple(shape):
            r = np.abs(res.astype(np.float32))
            self._make_current()
            hi = float(np.percentile(r, 99.5)) or 1.0
            layer = self.viewer.add_image(r, name="residual", colormap="inferno", blending="additive",
                                          opacity=0.45, scale=scale, contrast_limits=(0.0, hi))
            layer.visible = self.show_residual.isChecked()

    def residual(self, sample_id: str) -> np.ndarray | None:
        """The sample's residual map from ``residuals/<id>`` or a stacked ``residuals/<name>``."""
        store = self.model.project.arrays
        names = store.names("residuals/")
        for name in names:
            if name == f"residuals/{sample_id}":
                return store.load(name)[1]
        for name in names:
            mtime = store.path(name).stat().st_mtime
            cached = self._residual_cache.get(name)
            if cached is None or cached[0] != mtime:
                ids, data = store.load(name)
                rows = {} if ids is None else {str(s): i for i, s in enumerate(ids)}
                cached = (mtime, {"rows": rows, "data": data})
                self._residual_cache[name] = cached
            i = cached[1]["rows"].get(sample_id)
            if i is not None:
                return np.asarray(cached[1]["data"][i])
        return None

    def fit(self) -> None:
        self._fitting = True
        try:
            self.viewer.reset_view()
        finally:
            self._fitting = False
        self._autofit = True

    def _camera_moved(self, *_):
        if not self._fitting:
            self._autofit = False

    def set_view(self, name: str) -> None:
        """Show the 'axial', 'coronal' or 'sagittal' plane of a volume."""
        if name not in VIEWS:
            raise KeyError(f"no view {name!r}; one of {', '.join(VIEWS)}")
        if self.view_box.currentText() != name:
            self.view_box.setCurrentText(name)  # comes back here through the signal
            return
        layer = self.layer("image")
        if layer is None or layer.ndim != 3 or layer.rgb:
            return
        self.viewer.dims.order = VIEWS[name][0]
        axis = VIEWS[name][0][0]
        index = self._focus[axis] if self._focus is not None else layer.data.shape[axis] // 2
        self.viewer.dims.set_current_step(axis, index)
        self.fit()
        self._show_markers(name if self._tf is not None and self.viewer.dims.ndisplay == 2 else None)

    def markers(self) -> dict:
        """The orientation letters shown now, by side (empty when none)."""
        return {k: m.text() for k, m in self._markers.items() if not m.isHidden()}

    def _show_markers(self, view) -> None:
        letters = VIEWS[view][1] if view in VIEWS else None
        for (side, m), letter in zip(self._markers.items(), letters or ("",) * 4):
            m.setText(letter)
            m.setVisible(bool(letters))
        self._place_markers()

    def _place_markers(self) -> None:
        from qtpy.QtCore import QPoint, QRect

        try:  # the GL canvas itself, not napari's slider strip below it
            native = self.qt_viewer.canvas.native
            g = QRect(native.mapTo(self, QPoint(0, 0)), native.size())
        except Exception:  # noqa: BLE001 - private layout: fall back to the whole viewer
            g = self.qt_viewer.geometry()
        for side, m in self._markers.items():
            m.adjustSize()
            x = {"left": g.left() + 6, "right": g.right() - m.width() - 6}.get(side, g.center().x() - m.width() // 2)
            y = {"top": g.top() + 4, "bottom": g.bottom() - m.height() - 4}.get(side, g.center().y() - m.height() // 2)
            m.move(x, y)
            m.raise_()

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if self._viewer is None:
            return
        self._place_markers()
        if self._autofit and len(self.viewer.layers):
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self.fit)  # after the canvas has its new size

    # ------------------------------------------------------------------ controls
    def _apply_window(self, *_):
        layer = self.layer("image")
        if layer is None or layer.rgb:
            return
        text = self.preset.currentText()
        data = self._current_data
        if text == AUTO:
            lo, hi = auto_limits(data)
        elif text == FULL:
            lo, hi = float(data.min()), float(data.max())
            hi = hi if hi > lo else lo + 1
        else:
            key = text[3:].split(" (W")[0]
            lo, hi = window_level_limits(*CT_PRESETS[key])
        # widen the slider range so a preset outside the data range still applies
        layer.contrast_limits_range = (min(lo, float(data.min())), max(hi, float(data.max()), lo + 1))
        layer.contrast_limits = (lo, hi)

    def set_preset(self, name: str) -> None:
        """Select a window/level preset by its key ('lung', ...), AUTO or FULL."""
        for i in range(self.preset.count()):
            t = self.preset.itemText(i)
            if t == name or t.startswith(f"CT {name} ("):
                self.preset.setCurrentIndex(i)
                return
        raise KeyError(f"no window/level preset {name!r}")

    def _set_3d(self, on: bool) -> None:
        layer = self.layer("image")
        if layer is not None and layer.ndim == 3 and not layer.rgb:
            self.viewer.dims.ndisplay = 3 if on else 2
            self.fit()
            if on:
                self._oblique()
            self._show_markers(None if on or self._tf is None else self.view_box.currentText())

    def _oblique(self) -> None:
        """An oblique camera, so a volume reads as 3D at once (head-on, a MIP looks flat)."""
        self.camera.angles = (-25.0, 35.0, 150.0)

    def _set_visible(self, name: str, on: bool) -> None:
        layer = self.layer(name)
        if layer is not None:
            layer.visible = on

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        if self._viewer is None:  # never built: keep what was restored
            return dict(self._pending_state or {}, preset=self.preset.currentText())
        cam = self.camera
        return {"preset": self.preset.currentText(), "ndisplay": int(self.viewer.dims.ndisplay),
                "step": [int(s) for s in self.viewer.dims.current_step],
                "camera": {"center": list(map(float, cam.center)), "zoom": float(cam.zoom),
                           "angles": list(map(float, cam.angles))}}

    def restore(self, st: dict | None) -> None:
        if not st:
            return
        if self._viewer is None:
            self._pending_state = st
            return
        i = self.preset.findText(st.get("preset", ""))
        if i >= 0:
            self.preset.setCurrentIndex(i)
        if self.mode3d.isEnabled():
            self.mode3d.setChecked(st.get("ndisplay") == 3)
        try:
            step = st.get("step")
            if step and len(step) == len(self.viewer.dims.current_step):
                self.viewer.dims.current_step = tuple(step)
            cam = st.get("camera") or {}
            if cam.get("zoom"):
                self._autofit = False
                self.camera.zoom = cam["zoom"]
            if cam.get("center") and len(cam["center"]) == len(self.camera.center):
                self.camera.center = tuple(cam["center"])
            if cam.get("angles"):
                self.camera.angles = tuple(cam["angles"])
        except (ValueError, TypeError):
            pass

    def screenshot(self) -> np.ndarray:
        """RGBA array of the canvas as rendered now."""
        return self.qt_viewer.screenshot(flash=False)

    def close_viewer(self) -> None:
        if self._qt_viewer is not None:
            self._qt_viewer.close()
