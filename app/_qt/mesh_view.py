"""The current sample's surface mesh and its sampled points (pyvistaqt), or several selected
samples side by side (linked cameras) or overlaid for comparison."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSpinBox, \
    QVBoxLayout, QWidget

CURRENT, SIDE_BY_SIDE, OVERLAY = "current", "side by side", "overlay"
PALETTE = ["#e0b080", "#6fa8dc", "#93c47d", "#e06666", "#b4a7d6", "#f6b26b", "#76a5af", "#c27ba0"]


def pv_faces(faces: np.ndarray) -> np.ndarray:
    """(M, 3) triangles -> VTK's flat [3, a, b, c, 3, ...] cell array."""
    f = np.asarray(faces, dtype=np.int64)
    return np.hstack([np.full((len(f), 1), f.shape[1], dtype=np.int64), f]).ravel()


def surface_frame(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Area-weighted surface centroid and the largest vertex distance from it: the frame the
    points pipeline normalises to (centroid of area-weighted samples, unit sphere)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        c = v.mean(0)
    else:
        a, b, cc = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        area = 0.5 * np.linalg.norm(np.cross(b - a, cc - a), axis=1)
        w = area / max(area.sum(), 1e-12)
        c = ((a + b + cc) / 3.0 * w[:, None]).sum(0)
    r = float(np.linalg.norm(v - c, axis=1).max()) if len(v) else 1.0
    return c, max(r, 1e-9)


def mesh_from_mask(mask: np.ndarray, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of a binary mask: a fallback when no mesh was stored for the sample."""
    from skimage.measure import marching_cubes

    m = np.asarray(mask) > 0
    if m.sum() == 0:
        raise ValueError("empty mask: no surface")
    m = np.pad(m, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(m, 0.5, spacing=spacing or (1.0, 1.0, 1.0))
    return verts.astype(np.float32), faces.astype(np.int64)


def _close_interactor(plotter) -> None:
    """Close a pyvistaqt ``QtInteractor`` and drop its wrappers of the GL objects Qt owns.

    The interactor keeps Python wrappers of its widget's ``QOpenGLContext`` and of that context's
    ``QOffscreenSurface``. Qt deletes the surface with the widget without PySide noticing (it has
    no QObject parent), so its wrapper stays registered at a freed address: a new Qt object
    allocated there (a dock's toggle action, say) came back to Python as that stale surface, and
    the app tests failed with a TypeError or a segfault when a window was reopened. Forgetting
    them right after the close ends that (VTK then skips GL work on the closed window)."""
    plotter.close()
    # pyvistaqt's own reset of those references (older, native-window interactors keep none)
    forget = getattr(plotter, "_forget_context", None)
    if forget is not None:
        forget()


class MeshView(QWidget):
    """Follows the selection: in ``current`` mode the current sample, otherwise up to
    ``max_meshes`` of the selected samples. ``shown(ids)`` after each redraw."""

    shown = Signal(object)

    def __init__(self, model, selection, parent=None, *, lazy: bool = False):
        """With ``lazy``, VTK/pyvista are imported and the plotter built only once this view has
        been painted (its placeholder shown in a visible dock) or ``realise()`` is called."""
        super().__init__(parent)
        self._lazy_pending = lazy
        self._pending_state: dict | None = None
        self.model = model
        self.selection = selection
        self.plotter = None
        self.shown_ids: list[str] = []
        self._mesh_cache: dict[str, tuple | None] = {}
        self._points: tuple[float, dict, np.ndarray] | None = None
        self._n_panels = 0
        self._camera_state = None

        self.mode = QComboBox(self)
        self.mode.addItems([CURRENT, SIDE_BY_SIDE, OVERLAY])
        self.mode.setToolTip("Show the current sample, or compare the selected ones")
        self.mode.currentIndexChanged.connect(self.redraw)
        self.max_meshes = QSpinBox(self)
        self.max_meshes.setRange(2, 8)
        self.max_meshes.setValue(4)
        self.max_meshes.setToolTip("How many selected samples to compare")
        self.max_meshes.valueChanged.connect(self.redraw)
        self.show_mesh = QCheckBox("mesh", self)
        self.show_mesh.setChecked(True)
        self.show_mesh.toggled.connect(self.redraw)
        self.show_points = QCheckBox("points", self)
        self.show_points.setChecked(True)
        self.show_points.toggled.connect(self.redraw)
        self.reset_btn = QPushButton("Reset camera", self)
        self.reset_btn.clicked.connect(self.reset_camera)
        self.info = QLabel("no sample selected", self)
        # long ids must not widen the dock (and the window past the screen): elide instead
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)

        bar = QHBoxLayout()
        bar.addWidget(self.mode)
        bar.addWidget(self.max_meshes)
        bar.addWidget(self.show_mesh)
        bar.addWidget(self.show_points)
        bar.addWidget(self.reset_btn)
        bar.addStretch(1)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self._layout.addLayout(bar)
        self._placeholder = None
        if lazy:
            from app._qt.image_view import LazyPlaceholder

            self._placeholder = LazyPlaceholder("Loading the 3D view…", self.realise, self)
            self._layout.addWidget(self._placeholder, 1)
        else:
            self._make_plotter(1)
        self._layout.addWidget(self.info)

        selection.current_changed.connect(lambda _: self.redraw())
        selection.changed.connect(self._on_selection)
        if not lazy:
            self.redraw()

    @property
    def realised(self) -> bool:
        return not self._lazy_pending

    def realise(self) -> None:
        """Build the plotter (once), draw the selection and apply the state restored meanwhile."""
        if not self._lazy_pending:
            return
        self._lazy_pending = False
        if self._placeholder is not None:
            self._layout.removeWidget(self._placeholder)
            self._placeholder.deleteLater()
            self._placeholder = None
        self._make_plotter(1)
        self.redraw()
        st, self._pending_state = self._pending_state, None
        if st:
            self.restore(st)

    # ------------------------------------------------------------------ plotter
    def _make_plotter(self, n: int) -> None:
        from pyvistaqt import QtInteractor

        if self.plotter is not None and self._n_panels == n:
            return
        if self.plotter is not None:
            self._layout.removeWidget(self.plotter)
            _close_interactor(self.plotter)
            self.plotter.deleteLater()
        self.plotter = QtInteractor(self, shape=(1, n), border=n > 1)
        self.plotter.set_background("#1e1e24")
        self._layout.insertWidget(1, self.plotter, 1)
        if self.isVisible():
            self.plotter.show()  # realise the native window now, not at the next event loop turn
        self._n_panels = n
        if n > 1:
            self.plotter.link_views()

    def _on_selection(self, _ids) -> None:
        if self.mode.currentText() != CURRENT:
            self.redraw()

    def ids_to_show(self) -> list[str]:
        cur = self.selection.current
        if self.mode.currentText() == CURRENT:
            return [cur] if cur else []
        ids = list(self.selection.ids)
        if cur in ids:  # the current sample first, then the rest of the selection
            ids.remove(cur)
            ids.insert(0, cur)
        return ids[: self.max_meshes.value()]

    def redraw(self, *_) -> None:
        if self._lazy_pending:  # drawn when the plotter is built
            return
        ids = self.ids_to_show()
        side = self.mode.currentText() == SIDE_BY_SIDE and len(ids) > 1
        self._make_plotter(len(ids) if side else 1)
        p = self.plotter
        for i in range(self._n_panels):
            p.subplot(0, i)
            p.clear_actors()
        notes = []
        for k, sid in enumerate(ids):
            if side:
                p.subplot(0, k)
                p.add_text(sid if len(sid) <= 30 else "…" + sid[-29:], font_size=8, color="white",
                           name=f"title{k}")
            else:
                p.subplot(0, 0)
            overlay = len(ids) > 1 and not side
            colour = PALETTE[k % len(PALETTE)] if overlay else PALETTE[0]  # colour tells overlaid meshes apart
            opacity = 0.55 if overlay else 1.0
            notes.append(self._draw_sample(sid, colour, opacity))
        if not ids:
            self.info.setText("no sample selected")
        else:
            self.info.setText(" | ".join(n for n in notes if n))
            self.info.setToolTip("\n".join(notes))
        self.shown_ids = ids
        p.subplot(0, 0)
        if ids:
            self.reset_camera()
        self.shown.emit(tuple(ids))

    def _draw_sample(self, sid: str, colour: str, opacity: float) -> str:
        import pyvista as pv

        p = self.plotter
        mesh = self.mesh(sid) if self.show_mesh.isChecked() else None
        pts = self.points(sid) if self.show_points.isChecked() else None
        note = [sid]
        if mesh is not None:
            v, f = mesh
            if pts is not None:  # points live in the normalised frame: bring the mesh there
                c, r = surface_frame(v, f)
                v = (v - c) / r
            p.add_mesh(pv.PolyData(np.asarray(v, dtype=np.float32), pv_faces(f)), color=colour,
                       opacity=opacity, smooth_shading=True, specular=0.3)
            note.append(f"{len(v)} vertices")
        if pts is not None:
            p.add_points(np.asarray(pts, dtype=np.float32), color="#3fd0ff" if opacity == 1.0 else colour,
                         point_size=3, render_points_as_spheres=True)
            note.append(f"{len(pts)} points")
        if mesh is None and pts is None:
            note.append("no mesh or points")
        return " ".join(note)

    # ------------------------------------------------------------------ data
    def mesh(self, sid: str):
        """(vertices, faces) from ``meshes/<id>``, else marching cubes of its mask, else None."""
        if sid in self._mesh_cache:
            return self._mesh_cache[sid]
        store = self.model.project.arrays
        out = None
        try:
            if store.exists(f"meshes/{sid}"):
                z = store.load_extra(f"meshes/{sid}")
                out = (z["data"], z["faces"])
            else:
                row = self.model.samples.loc[sid]
                mf = row.get("mask_file")
                if row["kind"] == "mask":
                    out = mesh_from_mask(self.model.project.load_sample_array(sid))
                elif isinstance(mf, str) and mf:
                    out = mesh_from_mask(self.model.project.load_sample_array(sid, mask=True))
        except (ValueError, KeyError, OSError, RuntimeError):
            out = None
        if len(self._mesh_cache) > 64:
            self._mesh_cache.clear()
        self._mesh_cache[sid] = out
        return out

    def points(self, sid: str):
        store = self.model.project.arrays
        if not store.exists("points"):
            return None
        mtime = store.path("points").stat().st_mtime
        if self._points is None or self._points[0] != mtime:
            ids, data = store.load("points")
            rows = {} if ids is None else {str(s): i for i, s in enumerate(ids)}
            self._points = (mtime, rows, data)
        i = self._points[1].get(sid)
        return None if i is None else self._points[2][i]

    # ------------------------------------------------------------------ camera
    def reset_camera(self) -> None:
        self.realise()
        for i in range(self._n_panels):
            self.plotter.subplot(0, i)
            self.plotter.reset_camera()
        self.plotter.subplot(0, 0)
        self.plotter.render()

    def camera_state(self) -> dict:
        if self._lazy_pending:
            return dict(self._pending_state or {}, mode=self.mode.currentText(),
                        show_points=self.show_points.isChecked(), show_mesh=self.show_mesh.isChecked())
        cam = self.plotter.camera
        return {"position": list(map(float, cam.position)), "focal_point": list(map(float, cam.focal_point)),
                "view_up": list(map(float, cam.up)), "mode": self.mode.currentText(),
                "show_points": self.show_points.isChecked(), "show_mesh": self.show_mesh.isChecked()}

    def restore(self, st: dict | None) -> None:
        if not st:
            return
        i = self.mode.findText(st.get("mode", CURRENT))
        if i >= 0:
            self.mode.setCurrentIndex(i)
        self.show_points.setChecked(bool(st.get("show_points", True)))
        self.show_mesh.setChecked(bool(st.get("show_mesh", True)))
        if self._lazy_pending:
            self._pending_state = st
            return
        try:
            cam = self.plotter.camera
            cam.position = st["position"]
            cam.focal_point = st["focal_point"]
            cam.up = st["view_up"]
            self.plotter.render()
        except (KeyError, TypeError, ValueError):
            pass

    def screenshot(self) -> np.ndarray:
        self.realise()
        self.plotter.render()
        return self.plotter.screenshot(return_img=True)

    def close_plotter(self) -> None:
        if self.plotter is not None:
            _close_interactor(self.plotter)
