"""Application entry: ``run_app(project_path, screenshot=, quit_after=, sample=)``."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def user_data_dir() -> Path:
    if os.environ.get("LATENTMAP_DATA_HOME"):
        return Path(os.environ["LATENTMAP_DATA_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "latentmap"


def sample_project_path() -> Path:
    """Where the sample project lives for this user (built there on first use, so labelling in
    the sample never touches anything shipped with the app)."""
    return user_data_dir() / "sample-project"


def ensure_sample_project(app) -> Path | None:
    """Build the sample project on first use (import, points, a short DeepDiffusion training,
    clusters, Algorithm 1) in the background behind a progress dialog; None if cancelled."""
    from core.sample_project import is_complete

    target = sample_project_path()
    if is_complete(target):
        return target
    from qtpy.QtCore import QEventLoop, Qt
    from qtpy.QtWidgets import QProgressDialog

    from app._qt.jobs import run_steps
    from core.sample_project import sample_project_steps

    dlg = QProgressDialog("Preparing the sample project…", "Cancel", 0, 1000)
    dlg.setWindowTitle("LatentMap: first run")
    dlg.setWindowModality(Qt.ApplicationModal)
    dlg.setMinimumWidth(520)
    dlg.setMinimumDuration(0)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    stage = {"text": "Preparing the sample project…"}

    def log(line: str) -> None:
        print(line, flush=True)
        stage["text"] = line.replace("sample project: ", "").capitalize()

    job = run_steps(lambda: sample_project_steps(target, log=log), name="sample")
    loop = QEventLoop()

    def progress(p):
        dlg.setLabelText(stage["text"] + (f"\n{p.message[-70:]}" if p.message else ""))
        frac = p.fraction
        dlg.setValue(int(1000 * frac) if frac is not None else 0)

    job.progress.connect(progress)
    job.done.connect(lambda *_: loop.quit())
    dlg.canceled.connect(job.cancel)
    dlg.show()
    job.start()
    loop.exec()
    dlg.close()
    if job.state == "failed":
        raise RuntimeError(f"building the sample project failed: {job.error}") from job.error
    return target if job.state == "finished" else None


def _qapp():
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QApplication.setAttribute(Qt.AA_ShareOpenGLContexts)  # napari and VTK in one window
        app = QApplication(sys.argv[:1])
        app.setApplicationName("LatentMap")
        app.setOrganizationName("LatentMap")
        apply_style(app)
    return app


def apply_style(app) -> None:
    """The bundled theme (resources/styles) and the application icon (resources/icons).
    A missing or unreadable file leaves Qt's defaults: the app works without them."""
    from qtpy.QtGui import QIcon

    qss = ROOT / "resources" / "styles" / "latentmap.qss"
    icon = ROOT / "resources" / "icons" / "latentmap.svg"
    try:
        app.setStyleSheet(app.styleSheet() + "\n" + qss.read_text(encoding="utf-8"))
    except OSError as exc:
        sys.stderr.write(f"latentmap: style sheet {qss} not loaded: {exc}\n")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))


def run_app(project_path=None, *, screenshot=None, quit_after=None, sample: bool = False) -> int:
    """Open the main window on ``project_path`` (or the sample project) and run the event loop.

    With ``screenshot``, the window is grabbed once it has rendered, the PNG path printed, and
    the app exits (after ``quit_after`` seconds when given). Returns the exit status.
    """
    app = _qapp()
    if sample:
        project_path = ensure_sample_project(app)
        if project_path is None:
            sys.stderr.write("latentmap app: building the sample project was cancelled\n")
            return 1
    from qtpy.QtCore import QTimer

    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    model = ProjectModel.open(project_path) if project_path else None
    win = MainWindow(model)
    from app._qt.change_poll import poll_changes  # others' edits appear without a restart (issue 15)
    poll_changes(win)
    scripted = screenshot is not None or quit_after is not None
    win._non_blocking_errors = scripted

    def excepthook(etype, value, tb):  # an uncaught error in a slot: a dialog, not a dead app
        text = "".join(traceback.format_exception(etype, value, tb))
        sys.stderr.write(text)
        try:
            win.show_error("Unexpected error", f"{etype.__name__}: {value}", text)
        except Exception:  # noqa: BLE001
            pass

    sys.excepthook = excepthook
    win.show()
    win.raise_()

    status = {"code": 0}
    if screenshot is not None:
        win.realise_views()  # the heavy views are built lazily; the screenshot must show them
        # give napari/VTK a few event-loop rounds to render, but never past quit_after
        delay = 4.0 if quit_after is None else max(0.5, min(4.0, quit_after * 0.8))

        def shoot():
            try:
                app.processEvents()
                path = win.save_screenshot(screenshot)
                print(Path(path).resolve(), flush=True)
            except Exception as exc:  # noqa: BLE001
                sys.stderr.write(f"latentmap app: screenshot failed: {exc}\n")
                status["code"] = 1
            if quit_after is None:
                win.close()
                app.quit()

        QTimer.singleShot(int(delay * 1000), shoot)
    if quit_after is not None:
        def leave():
            win.close()
            app.quit()

        QTimer.singleShot(int(quit_after * 1000), leave)
    rc = app.exec()
    sys.excepthook = sys.__excepthook__
    return status["code"] or int(rc)
