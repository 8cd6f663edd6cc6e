"""The main window: docks for every view around the latent scatter, menus, status bar, session
state, background jobs with progress and cancel, and error dialogs instead of crashes.

Optional panels written separately (clusters, training, evaluation) are listed in
``OPTIONAL_PANELS`` by module path and docked when their module imports; adding one is one line.
"""
from __future__ import annotations

import base64
import html
import importlib
import traceback
from pathlib import Path

import numpy as np
from qtpy.QtCore import QByteArray, Qt, QTimer, Signal
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QAction, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, \
    QProgressBar, QPushButton, QWidget

from app.components import ColourBy, ProjectModel, Selection

#: (dock title, "module:Class", dock area) of panels other helpers provide; each class is built
#: as ``Class(model, selection)`` (or ``Class(model)``) and docked when its module imports.
OPTIONAL_PANELS = [
    ("Clusters", "app._qt.clusters_panel:ClustersPanel", "bottom"),
    ("Training", "app._qt.training_panel:TrainingPanel", "bottom"),
    ("Evaluation", "app._qt.evaluation_panel:EvaluationPanel", "bottom"),
    ("Gallery", "app._qt.gallery:GalleryView", "bottom"),
]
AREAS = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea,
         "top": Qt.TopDockWidgetArea, "bottom": Qt.BottomDockWidgetArea}
STATE_KEY = "main_window"
#: how often the session (layout, selection, panel settings) is saved while the app runs, so a
#: crash or a killed process loses at most this much of it (edits are saved as they are made)
AUTOSAVE_MS = 60_000
MAX_SAVED_SELECTION = 100_000


def _b64(data: QByteArray) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _unb64(text: str) -> QByteArray:
    return QByteArray(base64.b64decode(text.encode("ascii")))


def _load_class(spec: str):
    mod, _, cls = spec.partition(":")
    return getattr(importlib.import_module(mod), cls)


class MainWindow(QMainWindow):
    project_opened = Signal(object)  # the ProjectModel

    def __init__(self, model: ProjectModel | None = None, parent=None, *, optional_panels=True):
        super().__init__(parent)
        self.setWindowTitle("LatentMap")
        self.resize(1600, 1000)
        self.setDockNestingEnabled(True)
        self.setAcceptDrops(True)
        self.model: ProjectModel | None = None
        self.selection = Selection()
        self.colour = ColourBy()
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}
        self.panel_errors: dict[str, str] = {}
        self.jobs: list = []
        self._optional_panels = optional_panels
        from app._qt.after_paint import FirstPaintWatcher

        self._first_paint = FirstPaintWatcher(self)  # start-up work queued until the window shows
        self._saved_session = None  # the last session state written, to skip unchanged writes
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave_session)
        self._build_menus()
        self._build_status()
        if model is not None:
            self.set_model(model)
        else:
            self._show_empty()

    # ================================================================== menus
    def _action(self, menu, text, slot, shortcut=None, tip=None) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(lambda *_: self._guarded(slot))
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.new_action = self._action(f, "&New project…", self.new_project_dialog, "Ctrl+N",
                                       "Create an empty project folder, then import into it")
        self.open_action = self._action(f, "&Open project…", self.open_project_dialog, "Ctrl+O")
        self.recent_menu = f.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.import_action = self._action(f, "&Import files…", self.import_files_dialog, "Ctrl+I",
                                          "Import images, volumes, meshes, .npz or a manifest")
        self.import_dir_action = self._action(f, "Import &folder…", self.import_folder_dialog)
        self.export_menu = f.addMenu("&Export")
        self._action(self.export_menu, "Labels, clusters, embeddings (CSV/parquet)…", self.export_all_dialog)
        self._action(self.export_menu, "Per-sample table (CSV or parquet)…", self.export_sample_table_dialog)
        self._action(self.export_menu, "Selection as manifest…", self.export_selection_dialog)
        self._action(self.export_menu, "Window as PNG…", self.export_png_dialog)
        self._install_export_module()
        f.addSeparator()
        self._action(f, "&Quit", self.close, "Ctrl+Q")

        e = mb.addMenu("&Edit")
        self.undo_action = self._action(e, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(e, "&Redo", self.redo, "Ctrl+Shift+Z")
        e.addSeparator()
        self._action(e, "Select &all", lambda: self.selection.select(self.model.samples.index), "Ctrl+A")
        # a lambda: opening a project makes a new Selection, and the action must clear that one
        self._action(e, "Clear selection", lambda: self.selection.clear(), "Esc")

        self.view_menu = mb.addMenu("&View")
        self._action(self.view_menu, "Reset layout", self.reset_layout)
        self.view_menu.addSeparator()
        h = mb.addMenu("&Help")
        self._action(h, "Keyboard shortcuts", self._shortcuts, "F1")
        self._action(h, "About LatentMap", self._about)

    def _fill_recent_menu(self) -> None:
        """File > Open recent: the newest first; a folder that has gone is listed greyed out."""
        from app.components.recent import clear_recent, is_available, recent_projects

        self.recent_menu.clear()
        paths = recent_projects()
        for i, path in enumerate(paths):
            act = self.recent_menu.addAction(f"&{i + 1}  {path}" if i < 9 else path)
            act.setEnabled(is_available(path))
            if not act.isEnabled():
                act.setText(act.text() + "  (not found)")
            act.triggered.connect(lambda _=False, p=path: self._guarded(self.open_project, p))
        if not paths:
            self.recent_menu.addAction("(no recent projects)").setEnabled(False)
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear list")
        clear.setEnabled(bool(paths))
        clear.triggered.connect(lambda *_: clear_recent())

    def _install_export_module(self) -> None:
        """``app/_qt/export.py`` (optional) adds its own entries: ``install(window)`` gets the
        window (``window.export_menu``, ``window.model``, ``window.selection``); an
        ``ExportDialog(model, selection, parent)`` class gets a menu entry instead."""
        try:
            mod = importlib.import_module("app._qt.export")
        except ImportError as exc:
            self.panel_errors["Export"] = f"{type(exc).__name__}: {exc}"
            return
        if hasattr(mod, "install"):
            self._guarded(mod.install, self)
        elif hasattr(mod, "ExportDialog"):
            self.export_menu.addSeparator()
            self._action(self.export_menu, "Export…",
                         lambda: mod.ExportDialog(self.model, self.selection, self).exec())

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.status_project = QLabel("no project", self)
        self.job_label = QLabel("", self)
        self.job_bar = QProgressBar(self)
        self.job_bar.setMaximumWidth(220)
        self.job_bar.setTextVisible(True)
        self.job_cancel = QPushButton("Cancel", self)
        self.job_cancel.clicked.connect(self.cancel_jobs)
        for w in (self.job_label, self.job_bar, self.job_cancel):
            w.setVisible(False)
            sb.addPermanentWidget(w)
        sb.addPermanentWidget(self.status_project)

    # ================================================================== project
    def _show_empty(self) -> None:
        from app.components.recent import is_available, recent_projects

        self._recent_on_start = [p for p in recent_projects() if is_available(p)]
        links = "".join(f"<li><a href='recent:{i}'>{html.escape(Path(p).name or p)}</a>"
                        f" <span style='color:#666'>{html.escape(p)}</span></li>"
                        for i, p in enumerate(self._recent_on_start))
        msg = QLabel("<h2>LatentMap</h2><p>File &gt; Open project… (Ctrl+O), or File &gt; New project… (Ctrl+N)"
                     " and then File &gt; Import…</p>"
                     + (f"<p>Recent projects:</p><ul>{links}</ul>" if links else ""), self)
        msg.setAlignment(Qt.AlignCenter)
        msg.setTextInteractionFlags(Qt.TextBrowserInteraction)
        msg.linkActivated.connect(self._open_recent_link)
        self.empty_message = msg
        self.setCentralWidget(msg)
        # nothing to undo or import into before a project is open
        for a in (self.undo_action, self.redo_action, self.import_action, self.import_dir_action):
            a.setEnabled(False)

    def set_model(self, model: ProjectModel, source=None) -> None:
        """Show ``model``'s project: rebuild every view on it and restore its session state.
        ``source`` is how the user named it (a folder or a URL), for File > Open recent."""
        if self.model is not None:
            self.save_session()
            self._teardown_views()
            self.model.close()
        self.model = model
        self.selection = Selection()
        self.colour = ColourBy()
        self._build_views()
        model.history_changed.connect(self._update_history_actions)
        model.labels_changed.connect(lambda _: self._update_status())
        model.dev_changed.connect(lambda _: self._update_status())
        self.selection.changed.connect(lambda _: self._update_status())
        self._update_history_actions()
        for a in (self.import_action, self.import_dir_action):
            a.setEnabled(True)
        self.setWindowTitle(f"LatentMap — {model.project.name} ({model.project.path})")
        from app.components.recent import remember_project

        remember_project(source if source is not None else model.project.path)
        self.restore_session()
        self._saved_session = None
        self.autosave_timer.start()
        # no shapes in the project: the mesh view would stay empty, give its room to the image
        if "Mesh" in self.docks and not ({"mask", "mesh", "structure"} & set(model.samples["kind"])
                                         or model.project.arrays.exists("points")):
            self.docks["Mesh"].hide()
        self._update_status()
        self.project_opened.emit(model)
        if not len(model.project.runs()):
            from app._qt.after_paint import after_first_paint

            # after the window has shown (at start-up), from the event loop
            after_first_paint(lambda: QTimer.singleShot(0, lambda: self._guarded(self.start_first_map)))

    def _open_recent_link(self, href: str) -> None:
        if href.startswith("recent:"):
            self._guarded(self.open_project, self._recent_on_start[int(href.split(":", 1)[1])])

    def open_project(self, path) -> None:
        from core.project import Project

        self.set_model(ProjectModel(Project.open(Path(path))), source=path)

    def new_project(self, path) -> None:
        from core.project import Project

        self.set_model(ProjectModel(Project.create(Path(path))), source=path)

    def new_project_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New LatentMap project (a folder)", "my-project")
        if path:
            self.new_project(path)

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open LatentMap project")
        if path:
            self.open_project(path)

    # ================================================================== views
    def _build_views(self) -> None:
        from app._qt.image_view import ImageView
        from app._qt.labels_panel import LabelsPanel
        from app._qt.mesh_view import MeshView
        from app._qt.neighbours import NeighboursView
        from app._qt.samples_list import SamplesList

        m, s = self.model, self.selection
        # napari and VTK are built when their dock is first painted, not before the window shows
        lazy = not self.isVisible()
        self.samples_list = SamplesList(m, s)
        self.image_view = ImageView(m, s, lazy=lazy)
        self.mesh_view = MeshView(m, s, lazy=lazy)
        self.neighbours_view = NeighboursView(m, s)
        self.labels_panel = LabelsPanel(m, s)
        self.labels_panel.install_shortcuts(self)

        self.scatter_view = None
        try:
            from app._qt.scatter import ScatterView

            self.scatter_view = ScatterView(m, s, self.colour, self)
            from app._qt.health_banner import HealthBanner

            self.health_banner = HealthBanner(m, self.scatter_view)
        except ImportError as exc:
            self.panel_errors["Latent scatter"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the rest of the app must still open
            self.panel_errors["Latent scatter"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()

        if self.scatter_view is not None:
            self.setCentralWidget(self.scatter_view)
            self.panels["Latent scatter"] = self.scatter_view
            self.add_panel("Image", self.image_view, "right")
        else:
            self.setCentralWidget(self.image_view)
            self.panels["Image"] = self.image_view
        self.add_panel("Samples", self.samples_list, "left")
        self.add_panel("Mesh", self.mesh_view, "right")
        self.add_panel("Labels", self.labels_panel, "left")
        self.add_panel("Neighbours", self.neighbours_view, "bottom")
        if "Image" in self.docks:
            self.splitDockWidget(self.docks["Image"], self.docks["Mesh"], Qt.Vertical)
        self.splitDockWidget(self.docks["Samples"], self.docks["Labels"], Qt.Vertical)
        self._first_optional: dict[str, QDockWidget] = {}
        if self._optional_panels:
            for title, spec, area in OPTIONAL_PANELS:
                self._add_optional(title, spec, area)
        for first in self._first_optional.values():
            first.raise_()
        self._size_docks()
        self._default_state = self.saveState()

    def views_ready(self) -> bool:
        """The image and mesh views have been built and the samples table filled (at start-up
        they are, after the first paint)."""
        table = getattr(self, "samples_list", None)
        return (table is None or table.table_model.filled) and all(
            getattr(v, "realised", True) or not v.isVisible()
            for v in (getattr(self, "image_view", None), getattr(self, "mesh_view", None)) if v is not None)

    def realise_views(self) -> None:
        """Build the lazily created heavy views now (scripted screenshots need them drawn)."""
        if getattr(self, "samples_list", None) is not None:
            self.samples_list.fill()
        for v in (getattr(self, "image_view", None), getattr(self, "mesh_view", None)):
            if v is not None and hasattr(v, "realise"):
                v.realise()

    def _size_docks(self) -> None:
        d = self.docks
        self.resizeDocks([d["Samples"]], [340], Qt.Horizontal)
        if "Image" in d:
            self.resizeDocks([d["Image"]], [520], Qt.Horizontal)
            self.resizeDocks([d["Image"], d["Mesh"]], [330, 300], Qt.Vertical)
        self.resizeDocks([d["Samples"], d["Labels"]], [330, 300], Qt.Vertical)
        self.resizeDocks([d["Neighbours"]], [330], Qt.Vertical)  # room for the training charts
        if "bottom" in self._first_optional:
            self.resizeDocks([d["Neighbours"], self._first_optional["bottom"]], [700, 800], Qt.Horizontal)

    def _add_optional(self, title: str, spec: str, area: str) -> None:
        try:
            cls = _load_class(spec)
        except ImportError as exc:  # not written yet, or a dependency is missing
            self.panel_errors[title] = f"{type(exc).__name__}: {exc}"
            return
        try:
            try:
                widget = cls(self.model, self.selection)
            except TypeError:
                widget = cls(self.model)
        except Exception as exc:  # noqa: BLE001 - one broken panel must not stop the app
            self.panel_errors[title] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            return
        dock = self.add_panel(title, widget, area)
        # bottom panels share the half beside the neighbours strip as tabs; others tab together
        first = self._first_optional.get(area)
        if first is None:
            self._first_optional[area] = dock
            if area == "bottom" and "Neighbours" in self.docks:
                self.splitDockWidget(self.docks["Neighbours"], dock, Qt.Horizontal)
        else:
            self.tabifyDockWidget(first, dock)

    def add_panel(self, name: str, widget: QWidget, area: str = "right") -> QDockWidget:
        """Dock ``widget`` under ``name`` (also listed in the View menu, state saved by name)."""
        dock = QDockWidget(name, self)
        dock.setObjectName(f"dock-{name}")  # saveState/restoreState find docks by object name
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        self.addDockWidget(AREAS[area], dock)
        act = dock.toggleViewAction()
        self.view_menu.addAction(act)
        self.docks[name] = dock
        self.panels[name] = widget
        return dock

    def _teardown_views(self) -> None:
        for act in getattr(self.labels_panel, "shortcut_actions", []):
            self.removeAction(act)
        for name, dock in list(self.docks.items()):
            self.view_menu.removeAction(dock.toggleViewAction())
            self.removeDockWidget(dock)
            w = dock.widget()
            self._close_view(w)
            dock.deleteLater()
        cw = self.centralWidget()
        if cw is not None:
            self._close_view(cw)
            cw.deleteLater()
        self.docks.clear()
        self.panels.clear()

    @staticmethod
    def _close_view(w) -> None:
        for meth in ("disconnect_models", "close_plotter", "close_viewer"):
            if hasattr(w, meth):
                try:
                    getattr(w, meth)()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    def reset_layout(self) -> None:
        if getattr(self, "_default_state", None) is not None:
            self.restoreState(self._default_state)
            for d in self.docks.values():
                d.setVisible(True)

    # ================================================================== session
    def session_state(self) -> dict:
        st = {
            "geometry": _b64(self.saveGeometry()),
            "dock_state": _b64(self.saveState()),
            "docks": sorted(self.docks),
            "colour": self.colour.column,
            "selection": list(self.selection.ids[:MAX_SAVED_SELECTION]),
            "current": self.selection.current,
            "filter": self.samples_list.filter_edit.text(),
            "image": self.image_view.state(),
            "mesh": self.mesh_view.camera_state(),
        }
        for name, w in self.panels.items():
            if name not in ("Image", "Mesh") and hasattr(w, "state"):
                try:
                    st.setdefault("panels", {})[name] = w.state()
                except Exception:  # noqa: BLE001
                    pass
        return st

    def save_session(self, state: dict | None = None) -> None:
        if self.model is None:
            return
        try:
            state = self.session_state() if state is None else state
            self.model.project.save_state(STATE_KEY, state)
            self._saved_session = state
        except Exception as exc:  # noqa: BLE001 - closing must not fail on this
            print(f"latentmap: could not save the session state: {exc}")

    def autosave_session(self) -> bool:
        """Save the session when it changed since the last save (timer; not on a read-only
        project). Returns whether it wrote."""
        if self.model is None or getattr(self.model.project, "read_only", False):
            return False
        try:
            state = self.session_state()
        except Exception:  # noqa: BLE001 - a panel mid-rebuild: try again next time
            return False
        if state == self._saved_session:
            return False
        self.save_session(state)
        return self._saved_session is state

    def restore_session(self) -> None:
        st = self.model.project.load_state(STATE_KEY) or {}
        if not st:
            self._select_first()
            return
        try:
            if st.get("geometry"):
                self.restoreGeometry(_unb64(st["geometry"]))
            # a layout saved with other panels (an upgrade added one) would misplace the new
            # ones: keep the default layout then
            if st.get("dock_state") and st.get("docks") == sorted(self.docks):
                self.restoreState(_unb64(st["dock_state"]))
        except Exception:  # noqa: BLE001 - a bad saved layout falls back to the default
            pass
        if st.get("colour"):
            self.colour.column = st["colour"]
        if st.get("filter"):
            self.samples_list.filter_edit.setText(st["filter"])
        known = self.model.samples.index
        ids = [i for i in st.get("selection", []) if i in known]
        cur = st.get("current") if st.get("current") in known else None
        if ids or cur:
            self.selection.select(ids or [cur], current=cur)
        else:
            self._select_first()
        self.image_view.restore(st.get("image"))
        self.mesh_view.restore(st.get("mesh"))
        for name, pst in (st.get("panels") or {}).items():
            w = self.panels.get(name)
            if w is not None and hasattr(w, "restore"):
                try:
                    w.restore(pst)
                except Exception:  # noqa: BLE001
                    pass

    def _select_first(self) -> None:
        """A first open shows something at once: the first embedded sample (else the first)."""
        emb = self.model.embedding()
        ids = [str(emb[0][0])] if emb is not None and emb[0] is not None and len(emb[0]) else []
        if not ids and len(self.model.samples):
            ids = [self.model.samples.index[0]]
        if ids:
            self.selection.select(ids, current=ids[0])

    def closeEvent(self, ev) -> None:
        from qtpy.QtCore import QCoreApplication

        from app._qt.jobs import cancel_running_jobs

        self.autosave_timer.stop()
        self.cancel_jobs()
        # every running job, whichever panel started it (training, UMAP, evaluation): cancelled
        # and its thread ended (bounded) before the project and the interpreter go away
        cancel_running_jobs(timeout=15)
        # their queued "done" signals run now, while the project is still open; anything those
        # handlers started is cancelled too
        QCoreApplication.sendPostedEvents()
        cancel_running_jobs(timeout=5)
        if self.model is not None:
            self.save_session()
            self._teardown_views()
            self.model.close()
            self.model = None
        super().closeEvent(ev)

    # ================================================================== edits
    def undo(self) -> None:
        entry = self.model.undo()
        self.statusBar().showMessage(f"Undid: {self._describe(entry)}" if entry else "Nothing to undo", 4000)

    def redo(self) -> None:
        entry = self.model.redo()
        self.statusBar().showMessage(f"Redid: {self._describe(entry)}" if entry else "Nothing to redo", 4000)

    @staticmethod
    def _describe(entry: dict) -> str:
        k = entry.get("kind")
        if k == "label":
            return f"label '{entry.get('label')}' on {len(entry.get('changes', []))} samples"
        if k == "dev":
            return f"development set on {len(entry.get('changes', []))} samples"
        if k == "cluster_label":
            return f"label of cluster {entry.get('cluster')}"
        return str(k)

    def _update_history_actions(self) -> None:
        if self.model is None:
            return
        self.undo_action.setEnabled(self.model.can_undo())
        self.redo_action.setEnabled(self.model.can_redo())

    def _update_status(self) -> None:
        if self.model is None:
            return
        df = self.model.samples
        run = self.model.run_name() or "no run"
        self.status_project.setText(
            f"{self.model.project.name} · {len(df)} samples · {len(self.selection)} selected · "
            f"{int(df['dev'].sum())} dev · {run}")

    # ================================================================== jobs
    def run_job(self, task, data=None, *, title: str = "Working", on_done=None, **job_kwargs):
        """Run ``task`` (a method, or a workflow generator as ``StepTask``) off the GUI thread with progress in the
        status bar and a Cancel button; ``on_done(qtjob)`` runs on the GUI thread at the end."""
        from app._qt.jobs import QtJob

        qj = QtJob(task, data, parent=self, **job_kwargs)
        self.jobs.append(qj)
        self.job_label.setText(title)
        self.job_bar.setRange(0, 0)
        for w in (self.job_label, self.job_bar, self.job_cancel):
            w.setVisible(True)
        self.job_cancel.setEnabled(True)

        def progress(p):
            frac = p.fraction
            if frac is not None:
                self.job_bar.setRange(0, 1000)
                self.job_bar.setValue(int(frac * 1000))
            if p.message:
                self.job_label.setText(f"{title}: {p.message[-60:]}")

        def status(s):
            if s == "cancelling":
                self.job_label.setText(f"{title}: cancelling…")
                self.job_cancel.setEnabled(False)

        def done(s):
            self.jobs.remove(qj)
            if not self.jobs:
                for w in (self.job_label, self.job_bar, self.job_cancel):
                    w.setVisible(False)
            self.statusBar().showMessage(f"{title}: {s}", 6000)
            if s == "failed":
                self.show_error(f"{title} failed", f"{type(qj.error).__name__}: {qj.error}", qj.traceback)
            if on_done is not None:
                self._guarded(on_done, qj)

        qj.progress.connect(progress)
        qj.status.connect(status)
        qj.done.connect(done)
        return qj.start()

    def cancel_jobs(self) -> None:
        for j in list(self.jobs):
            j.cancel()

    # ================================================================== import / export
    def import_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import into the project")
        if paths:
            self.import_sources(paths)

    def import_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a folder (DICOM series, images, meshes…)")
        if path:
            self.import_sources([path])

    def import_sources(self, paths, *, dataset: str | None = None, structures=None):
        """Import ``paths`` (files, folders, manifests) in a background job, derive what the
        active run reads (meshes and points of new masks, meshes and chosen label-map
        structures), and place the new samples against the active run (nearest cluster, its
        prediction, nearest known cases) without retraining or re-clustering. Progress and
        Cancel in the status bar; the first new case is selected when done."""
        paths = [str(p) for p in paths]
        if structures is None:
            structures = self._ask_structures(paths)
            if structures is None:
                return None
        model = self.model
        box: dict = {}

        def steps():
            box["result"] = yield from model.import_and_place_steps(paths, structures=structures, dataset=dataset)
            return box["result"]

        def done(qj):
            report, placements = box.get("result") or (None, [])
            model.placed(placements)
            self._update_status()
            if qj.state == "finished":
                self.start_first_map()
            if placements:
                ids = [p.id for p in placements]
                self.selection.select(ids, current=ids[0])
            elif not self.selection.ids:
                self._select_first()
            lines = report.lines() if report is not None else []
            for p in placements:
                lines.append(f"{p.id}: {p.prediction.describe()}; nearest known case "
                             + (f"{p.neighbours[0].id} (d={p.neighbours[0].distance:.4g})" if p.neighbours else "—"))
            if qj.state in ("finished", "cancelled"):
                if placements and qj.state == "finished":
                    self.statusBar().showMessage(
                        f"placed {len(placements)} new case(s) in {model.run_name()}: see the Neighbours strip", 10000)
                    return
                box_ = QMessageBox(QMessageBox.Information, f"Import {qj.state}",
                                   "\n".join(lines[:25]) or f"Import {qj.state}.", QMessageBox.Ok, self)
                if len(lines) > 25:
                    box_.setDetailedText("\n".join(lines))
                box_.show()

        from app._qt.jobs import StepTask

        return self.run_job(StepTask(steps, name="import"), title="Import", on_done=done)

    def start_first_map(self):
        """A new project's first map, without training: the baseline embedding (PCA of pixels
        or voxels, the untrained PointNet for shapes; ``core.workflows.baseline``) in the
        background, once per project. It becomes the active run only when none is active."""
        from core.workflows.baseline import BaselineTask, has_baseline

        model = self.model
        if model is None or not len(model.samples) or has_baseline(model.project):
            return None
        task = BaselineTask(model.project)

        def done(qj):
            if qj.state != "finished" or task.run_id is None or self.model is not model:
                return
            if model.active_run is None or model.active_run == task.run_id:
                model.active_run = task.run_id
                model.active_clustering = model.project.meta("active_clustering") or None
            if not self.selection.ids:
                self._select_first()
            self._update_status()
            self.statusBar().showMessage(f"first map ready: run {task.run_id} ({task.method_name}), "
                                         "no training needed; train a method to improve on it", 10000)

        return self.run_job(task, title="First map", on_done=done)

    def _ask_structures(self, paths) -> list[str] | None:
        """Structures of a label map to make into samples: asked when a label map is imported
        (names or values, comma-separated; empty: none). None when the user cancels."""
        from core.io.labelmaps import is_label_map_name

        if getattr(self, "_non_blocking_errors", False) or not any(is_label_map_name(p) for p in paths):
            return []
        from qtpy.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(
            self, "Structures of the label map",
            "Make these structures of the label map into samples, each with its own mesh and points\n"
            "(names from the map's label table, e.g. liver, or label values; comma-separated; empty: none):")
        if not ok:
            return None
        return [t.strip() for t in text.split(",") if t.strip()]

    # drag and drop of files onto the window: the same import-and-place path
    def dragEnterEvent(self, ev) -> None:
        if self.model is not None and ev.mimeData().hasUrls():
            ev.acceptProposedAction()
        else:
            super().dragEnterEvent(ev)

    def dropEvent(self, ev) -> None:
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if self.model is not None and paths:
            ev.acceptProposedAction()
            self._guarded(self.import_sources, paths)
        else:
            super().dropEvent(ev)

    def export_all_dialog(self) -> None:
        from core.export import export_all

        folder = QFileDialog.getExistingDirectory(self, "Export labels, clusters, embeddings into")
        if folder:
            paths = export_all(self.model.project, folder, fmt="csv")
            self.statusBar().showMessage(f"exported {len(paths)} files to {folder}", 6000)

    def export_sample_table_dialog(self) -> None:
        """id, split, labels, development set, cluster, prediction, support, score, override of
        every sample, in the format chosen by the file name (.csv or .parquet)."""
        from core.export import sample_table, write_table

        path, chosen = QFileDialog.getSaveFileName(self, "Save the per-sample table", "samples.csv",
                                                   "CSV (*.csv);;Parquet (*.parquet)")
        if path:
            if not path.lower().endswith((".csv", ".parquet", ".pq")):
                path += ".parquet" if "Parquet" in chosen else ".csv"
            write_table(sample_table(self.model.project, self.model.active_clustering), path)
            self.statusBar().showMessage(f"saved {len(self.model.samples)} samples to {path}", 6000)

    def export_selection_dialog(self) -> None:
        from core.export import selection_manifest, write_table

        path, _ = QFileDialog.getSaveFileName(self, "Save the selection as a manifest", "selection.csv",
                                              "CSV (*.csv);;Parquet (*.parquet)")
        if path:
            write_table(selection_manifest(self.model.project, list(self.selection.ids)), path)
            self.statusBar().showMessage(f"saved {len(self.selection)} samples to {path}", 6000)

    def export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the window as PNG", "latentmap.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def grab_window(self):
        """The window as rendered now, GL views included. ``QWidget.grab`` re-renders every
        widget (grabbing the screen instead can return stale pixels under a virtual X server
        without a compositor); the VTK view, a native window that ``grab`` may miss right after
        it was rebuilt, is painted in from its own off-screen render."""
        from qtpy.QtCore import QPoint
        from qtpy.QtGui import QImage, QPainter

        pix = self.grab()
        mv = getattr(self, "mesh_view", None)
        if mv is not None and mv.plotter is not None and mv.isVisible() and mv.plotter.isVisible():
            try:
                img = np.ascontiguousarray(mv.screenshot()[..., :3])
                h, w = img.shape[:2]
                qimg = QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()
                pos = mv.plotter.mapTo(self, QPoint(0, 0))
                painter = QPainter(pix)
                painter.drawImage(pos, qimg.scaled(mv.plotter.width() * pix.devicePixelRatio(),
                                                   mv.plotter.height() * pix.devicePixelRatio()))
                painter.end()
            except Exception:  # noqa: BLE001 - the plain grab is still a screenshot
                pass
        return pix

    def save_screenshot(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab_window().save(str(path), "PNG"):
            raise OSError(f"{path}: could not write the screenshot")
        return path

    # ================================================================== errors
    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a dialog, not a crash
            self.show_error("Something went wrong", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None

    def show_error(self, title: str, text: str, details: str = "") -> None:
        box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setModal(True)
        if getattr(self, "_non_blocking_errors", False):
            box.show()  # scripted runs (screenshots) must not block on a dialog
        else:
            box.exec()

    def _shortcuts(self):
        from app._qt.shortcuts import show_shortcuts

        self.shortcuts_dialog = show_shortcuts(self)
        return self.shortcuts_dialog

    def _about(self):
        """Help › About (app/_qt/about.py): version, libraries, sample-data licence."""
        from app._qt.about import show_about

        self.about_dialog = show_about(self, self.panel_errors)
        return self.about_dialog
