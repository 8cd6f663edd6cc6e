"""Application entry: ``run_app(project_path, screenshot=, quit_after=, sample=)``."""
from __future__ import annotations

import os
import shutil
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SAMPLE = ROOT / "resources" / "sample" / "project"


def user_data_dir() -> Path:
    if os.environ.get("LATENTMAP_DATA_HOME"):
        return Path(os.environ["LATENTMAP_DATA_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "latentmap"


def _bundle_version(bundled: Path) -> str:
    """Identity of a bundled sample project: its database's creation time. Read with an
    immutable connection: the bundle may be read-only and must never gain -wal/-shm files."""
    import sqlite3

    from core.project.store import DB_NAME

    uri = (bundled / DB_NAME).resolve().as_uri() + "?immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='created_at'").fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else ""


def _has_user_edits(path: Path) -> bool:
    from core.project import Project

    try:
        with Project.open(path) as pr:
            return bool(pr.query("SELECT 1 FROM history LIMIT 1"))
    except Exception:  # noqa: BLE001 - an unreadable copy is replaced
        return False


def sample_project_path(bundled: Path = BUNDLED_SAMPLE) -> Path:
    """A user-writable copy of the bundled sample project, made the first time, so labelling
    in the sample never changes the copy shipped with the app. A newer bundle replaces the
    copy only while the user has not edited it."""
    from core.project.store import DB_NAME

    target = user_data_dir() / "sample-project"
    marker = target / ".bundled-version"
    have_bundle = (bundled / DB_NAME).exists()
    if (target / DB_NAME).exists():
        if not have_bundle:
            return target
        version = _bundle_version(bundled)
        current = marker.read_text() if marker.exists() else ""
        if current == version or _has_user_edits(target):
            return target
        shutil.rmtree(target)
    if not have_bundle:
        raise FileNotFoundError(
            f"the bundled sample project is missing ({bundled}); build it with `make sample`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    # -wal/-shm files of a project someone had open are not part of the copy: the database is
    # checkpointed on close, and copying a live WAL could mix two states
    shutil.copytree(bundled, tmp, ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.tmp"))
    (tmp / ".bundled-version").write_text(_bundle_version(bundled))
    tmp.rename(target)
    return target


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
    return app


def run_app(project_path=None, *, screenshot=None, quit_after=None, sample: bool = False) -> int:
    """Open the main window on ``project_path`` (or the sample project) and run the event loop.

    With ``screenshot``, the window is grabbed once it has rendered, the PNG path printed, and
    the app exits (after ``quit_after`` seconds when given). Returns the exit status.
    """
    if sample:
        project_path = sample_project_path()
    app = _qapp()
    from qtpy.QtCore import QTimer

    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    model = ProjectModel.open(project_path) if project_path else None
    win = MainWindow(model)
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
