"""The main window on a project built from shared data: a programmatic lasso drives every view;
labels survive undo, redo, close and reopen; session state comes back; import runs in the
background; screenshots are not blank; ``latentmap app --screenshot`` works end to end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from tests.app.conftest import nonblank
from tests.conftest import DATA, ROOT, need


def _qimage_array(img) -> np.ndarray:
    img = img.convertToFormat(img.Format.Format_RGB32)
    ptr = img.constBits()
    return np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())[
        :, : img.width() * 4].reshape(img.height(), img.width(), 4)


@pytest.fixture(autouse=True)
def _no_modal_dialogs(monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: QMessageBox.Ok)
    return shown


def open_window(qtbot, path):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    win = MainWindow(ProjectModel.open(path, author="tester"))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    # napari and VTK are built after the first paint (lazy start-up)
    qtbot.waitUntil(win.views_ready, timeout=300_000)
    return win


def test_lasso_drives_every_view_and_labels_survive_reopen(qtbot, project_copy, _no_modal_dialogs):
    path, info = project_copy
    win = open_window(qtbot, path)
    # a first open shows the first embedded sample everywhere
    first = info["mask_ids"][0]
    assert win.selection.current == first
    assert win.image_view.sample_id == first and win.mesh_view.shown_ids == [first]

    # programmatic lasso in the scatter's PCA plane: a polygon around the points of one corner
    ids, xy = win.model.projection("pca")
    ids = [str(i) for i in ids]
    cx, cy = np.median(xy, axis=0)
    inside = [i for i, (x, y) in zip(ids, xy) if x < cx and y < cy]
    poly = np.array([[xy[:, 0].min() - 1, xy[:, 1].min() - 1], [cx, xy[:, 1].min() - 1], [cx, cy],
                     [xy[:, 0].min() - 1, cy]])
    if win.scatter_view is not None:
        got = win.scatter_view.lasso_select(poly)
    else:  # the scatter is another module: drive the shared selection the same way
        win.selection.select(inside)
        got = list(win.selection.ids)
    assert sorted(got) == sorted(inside) and len(inside) > 3
    assert set(win.selection.ids) == set(inside)
    cur = win.selection.current
    assert cur in inside
    # image, mesh and neighbours follow
    assert win.image_view.sample_id == cur
    np.testing.assert_array_equal(win.image_view.layer("image").data, win.model.project.load_sample_array(cur))
    assert win.mesh_view.shown_ids == [cur]
    assert win.neighbours_view.result.query == cur
    # the samples table selects the same rows
    rows = {win.samples_list.table_model.sample_id(win.samples_list.proxy.mapToSource(i).row())
            for i in win.samples_list.view.selectionModel().selectedRows()}
    assert rows == set(inside)
    # comparing the selection's meshes side by side
    win.mesh_view.mode.setCurrentText("side by side")
    assert len(win.mesh_view.plotter.renderers) == min(4, len(inside))
    win.mesh_view.mode.setCurrentText("current")

    # label the lasso with key 2 (hyperplasia), undo and redo through the Edit menu
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    before = {i: win.model.labels()[i] for i in inside}
    qtbot.keyClick(win, Qt.Key_2)
    assert all("hyperplasia" in win.model.labels()[i] for i in inside)
    win.undo_action.trigger()
    assert {i: win.model.labels()[i] for i in inside} == before
    win.redo_action.trigger()
    assert all("hyperplasia" in win.model.labels()[i] for i in inside)
    dev_before = set(win.model.project.dev_ids())
    win.labels_panel.set_dev(True)
    win.image_view.set_preset("bone")
    win.samples_list.filter_edit.setText("train")

    # screenshots of the window and of each view are not blank
    shot = win.save_screenshot(path.parent / "window.png")
    from qtpy.QtGui import QImage

    assert nonblank(_qimage_array(QImage(str(shot))))
    assert nonblank(win.image_view.screenshot())
    assert nonblank(win.mesh_view.screenshot())
    for name in ("Samples", "Labels", "Neighbours"):
        assert nonblank(_qimage_array(win.panels[name].grab().toImage())), name
    if win.scatter_view is not None:
        assert nonblank(_qimage_array(win.scatter_view.grab().toImage()))

    win.colour.column = "split"
    cam = win.mesh_view.plotter.camera
    cam.azimuth = 40.0
    mesh_cam = win.mesh_view.camera_state()
    win.close()  # saves the session state
    assert win.model is None

    from core.project import Project

    with Project.open(path) as pr:  # the labels are in the database, with author and time
        labels = pr.labels(inside)
        assert all("hyperplasia" in labels[i] for i in inside)
        assert pr.label_author(inside[0], "hyperplasia")[0] == "tester"
        assert set(inside) <= set(pr.dev_ids())

    # reopen: selection, current sample, filter, preset and undo history come back
    win2 = open_window(qtbot, path)
    assert set(win2.selection.ids) == set(inside)
    assert win2.selection.current == cur
    assert win2.samples_list.filter_edit.text() == "train"
    assert win2.image_view.preset.currentText().startswith("CT bone")
    assert win2.image_view.sample_id == cur
    assert win2.colour.column == "split"
    np.testing.assert_allclose(win2.mesh_view.camera_state()["position"], mesh_cam["position"], rtol=1e-5)
    win2.undo_action.trigger()  # undo across sessions: the dev-set marking
    assert set(win2.model.project.dev_ids()) == dev_before
    win2.undo_action.trigger()  # then the label
    assert {i: win2.model.labels()[i] for i in inside} == before
    win2.close()
    assert not _no_modal_dialogs, f"unexpected error dialogs: {_no_modal_dialogs}"


def test_optional_panels_and_add_panel(qtbot, project_copy):
    from qtpy.QtWidgets import QLabel

    from app._qt.main_window import OPTIONAL_PANELS

    path, _ = project_copy
    win = open_window(qtbot, path)
    for title, spec, _area in OPTIONAL_PANELS:
        # each optional panel is either docked or its import error is recorded, never a crash
        assert title in win.docks or title in win.panel_errors
    dock = win.add_panel("Extra", QLabel("extra"), "right")
    assert win.docks["Extra"] is dock and dock.toggleViewAction() in win.view_menu.actions()
    qtbot.waitUntil(dock.isVisible, timeout=3000)
    dock.toggleViewAction().trigger()
    assert not dock.isVisible()
    dock.toggleViewAction().trigger()
    assert dock.isVisible()
    win.close()


def test_open_another_project_rebuilds_views(qtbot, project_copy, built_project, tmp_path):
    import shutil

    path, info = project_copy
    other = tmp_path / "other"
    shutil.copytree(built_project[0], other)
    win = open_window(qtbot, path)
    sid = info["mask_ids"][7]
    win.selection.select([sid], current=sid)
    old_image_view = win.image_view
    win.open_project(other)
    assert win.model.project.path == other and win.image_view is not old_image_view
    assert win.image_view.sample_id == info["mask_ids"][0]  # the other project's first sample
    from core.project import Project

    with Project.open(path) as pr:  # the first project's session was saved on the switch
        assert pr.load_state("main_window")["current"] == sid
    win.close()


def test_import_runs_in_background_with_progress(qtbot, tmp_path):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from core.project import Project

    src = need(DATA / "breastmnist")
    Project.create(tmp_path / "p").close()
    win = MainWindow(ProjectModel.open(tmp_path / "p"), optional_panels=False)
    qtbot.addWidget(win)
    win.show()
    progress = []
    job = win.import_sources([next(src.glob("*.npz"))])
    job.progress.connect(progress.append)
    assert win.job_bar.isVisible()  # the GUI thread is free while it runs
    with qtbot.waitSignal(job.done, timeout=120000) as blocker:
        pass
    assert blocker.args == ["finished"]
    qtbot.waitUntil(lambda: len(win.model.samples) == 780, timeout=10000)
    assert win.samples_list.table_model.rowCount() == 780
    qtbot.waitUntil(lambda: not win.jobs, timeout=300_000)  # the first map follows the import
    assert not win.job_bar.isVisible()
    # the first imported sample is shown at once: a 2D layer, no 3D mode, no mesh
    sid = win.model.samples.index[0]
    assert win.selection.current == sid
    win.realise_views()  # the mesh dock is hidden here (no shapes): its lazy view was never built
    assert win.image_view.layer("image").data.shape == (28, 28)
    assert win.image_view.viewer.dims.ndisplay == 2 and not win.image_view.mode3d.isEnabled()
    assert "no mesh or points" in win.mesh_view.info.text()
    assert nonblank(win.image_view.screenshot())
    win.close()


def test_import_cancel(qtbot, tmp_path):
    from app._qt.jobs import run_steps
    from core.jobs import Progress

    def work():
        import time

        for i in range(10_000):
            yield Progress(step=i, global_step=i, n_epochs=1, steps_per_epoch=10_000, message=f"item {i}")
            time.sleep(0.001)
        return "done"

    qj = run_steps(work, name="slow")
    states = []
    qj.status.connect(states.append)
    qj.start()
    qtbot.waitUntil(lambda: len(qj.job.history) > 0, timeout=5000)
    with qtbot.waitSignal(qj.done, timeout=10000) as blocker:
        qj.cancel()
    assert blocker.args == ["cancelled"]
    assert "cancelling" in states
    assert qj.job.history[-1].step < 9_999


def test_empty_window_and_bad_project_dialog(qtbot, tmp_path, _no_modal_dialogs):
    from app._qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert not win.undo_action.isEnabled()
    win._guarded(win.open_project, tmp_path / "nothing-here")
    assert _no_modal_dialogs and "not a LatentMap project" in _no_modal_dialogs[0]
    win.new_project(tmp_path / "fresh")  # an empty project opens with every view, nothing selected
    assert (tmp_path / "fresh" / "project.sqlite").exists() and win.import_action.isEnabled()
    assert win.selection.current is None and win.image_view.sample_id is None
    win._guarded(win.new_project, tmp_path / "fresh")
    assert "already exists" in _no_modal_dialogs[-1]
    win.close()


def test_recent_projects_menu_and_start_screen(qtbot, tmp_path, built_project, monkeypatch,
                                              _no_modal_dialogs):
    """Projects opened are listed newest first in File > Open recent and on the empty window,
    across sessions; a folder that has gone is greyed out; a URL with a password is never kept."""
    import shutil

    from app._qt.main_window import MainWindow
    from app.components.recent import MAX_RECENT, recent_file, recent_projects, remember_project

    monkeypatch.setenv("LATENTMAP_DATA_HOME", str(tmp_path / "home"))
    assert recent_projects() == []
    a, b = tmp_path / "a", tmp_path / "b"
    for p in (a, b):
        shutil.copytree(built_project[0], p)
    win = MainWindow(optional_panels=False)
    qtbot.addWidget(win)
    win.open_project(a)
    win.open_project(b)
    win.open_project(a)
    assert recent_projects() == [str(a.resolve()), str(b.resolve())]
    win.close()
    # next session: the start screen links them; a click opens the project
    shutil.rmtree(b)
    win = MainWindow(optional_panels=False)
    qtbot.addWidget(win)
    assert str(a.resolve()) in win.empty_message.text() and str(b) not in win.empty_message.text()
    win.recent_menu.aboutToShow.emit()
    acts = [x for x in win.recent_menu.actions() if not x.isSeparator()]
    assert [x.isEnabled() for x in acts[:2]] == [True, False] and "not found" in acts[1].text()
    win.empty_message.linkActivated.emit("recent:0")
    assert win.model is not None and win.model.project.path.resolve() == a.resolve()
    acts[-1].trigger()  # Clear list
    assert recent_projects() == []
    win.close()
    # bounded, no passwords kept, a damaged list reads as empty
    for i in range(MAX_RECENT + 3):
        remember_project(tmp_path / f"p{i}")
    assert len(recent_projects()) == MAX_RECENT and recent_projects()[0].endswith(f"p{MAX_RECENT + 2}")
    remember_project("postgresql://ann:secret@db/lm?folder=/x")
    remember_project("postgresql://ann@db/lm?folder=/x")
    assert recent_projects()[0] == "postgresql://ann@db/lm?folder=/x"
    assert "secret" not in recent_file().read_text()
    recent_file().write_text("{not json")
    assert recent_projects() == []


def test_session_is_saved_while_the_app_runs(qtbot, project_copy, _no_modal_dialogs):
    """The layout, selection and filter reach the project while the app runs (a crash or a kill
    loses at most a minute of them), and only when they changed."""
    from core.project import Project

    path, info = project_copy
    win = open_window(qtbot, path)
    assert win.autosave_timer.isActive() and win.autosave_timer.interval() <= 60_000
    some = info["mask_ids"][3:6]
    win.selection.select(some, current=some[0])
    win.samples_list.filter_edit.setText("train")
    assert win.autosave_session() is True
    assert win.autosave_session() is False          # nothing changed since
    with Project.open(path, read_only=True) as other:  # as the next start would read it
        saved = other.load_state("main_window")
    assert saved["selection"] == list(some) and saved["current"] == some[0] and saved["filter"] == "train"
    win.close()
    assert not win.autosave_timer.isActive()


@pytest.mark.slow
def test_sample_project_built_on_first_use_and_opened(qtbot, qapp, tmp_path, monkeypatch):
    """make run's path: the bundled cohort becomes a trained, clustered project behind a progress
    dialog the first time; the app opens it with clusters showing; later runs reuse it."""
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from app.main import ensure_sample_project
    from core.sample_project import is_complete

    monkeypatch.setenv("LATENTMAP_DATA_HOME", str(tmp_path / "home"))
    path = ensure_sample_project(qapp)
    assert path == tmp_path / "home" / "sample-project" and is_complete(path)
    assert ensure_sample_project(qapp) == path  # built once
    model = ProjectModel.open(path, author="tester")
    assert model.active_clustering and model.embedding() is not None
    runs = model.project.runs()
    assert (runs["status"] == "finished").all()
    # the trained run is the active one, its baseline first map is there to compare with
    assert list(runs["method"]) == ["deepdiffusion", "baseline-pointnet"]
    assert model.active_run == int(runs["id"].iloc[0])
    assert len(model.project.dev_ids()) >= 4 and not model.project.can_undo()
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(1500)
    clusters = win.panels["Clusters"]
    assert clusters.table.rowCount() >= 2
    png = win.save_screenshot(tmp_path / "sample.png")
    from qtpy.QtGui import QImage

    assert nonblank(_qimage_array(QImage(str(png))), min_std=10)
    win.close()


@pytest.mark.slow
def test_cli_app_screenshot(project_copy, tmp_path):
    path, _ = project_copy
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs the Xvfb display pytest-xvfb provides")
    png = tmp_path / "shot.png"
    code = ("import sys; from core.cli import app as a; import argparse; "
            "p = argparse.ArgumentParser(); s = p.add_subparsers(); a.register(s); "
            "args = p.parse_args(sys.argv[1:]); sys.exit(args.func(args))")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    out = subprocess.run([sys.executable, "-c", code, "app", str(path), "--screenshot", str(png),
                          "--quit-after", "6"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(png.resolve()) in out.stdout
    from qtpy.QtGui import QImage

    assert nonblank(_qimage_array(QImage(str(png))), min_std=10)


def test_failed_job_shows_an_error_dialog(qtbot, _no_modal_dialogs):
    from app._qt.jobs import StepTask
    from app._qt.main_window import MainWindow
    from core.jobs import Progress

    win = MainWindow()
    qtbot.addWidget(win)

    def work():
        yield Progress(step=0, global_step=0, n_epochs=1, steps_per_epoch=2, message="reading")
        raise OSError("disk.nii: truncated file")

    done = []
    qj = win.run_job(StepTask(work, "broken"), title="Import", on_done=lambda j: done.append(j.state))
    qtbot.waitUntil(lambda: done == ["failed"], timeout=10000)
    assert any("truncated file" in t for t in _no_modal_dialogs)
    assert "OSError" in qj.traceback and not win.jobs
    win.close()


def test_bundled_style_and_icon_are_applied(qapp):
    from app.main import apply_style

    before = qapp.styleSheet()
    try:
        apply_style(qapp)
        assert "QDockWidget::title" in qapp.styleSheet()
        assert not qapp.windowIcon().isNull()
    finally:
        qapp.setStyleSheet(before)


def test_scatter_keys_and_window_keys_do_not_cancel_each_other(qtbot, project_copy, qtlog,
                                                                _no_modal_dialogs):
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QTextBrowser

    """L is the scatter's lasso while the plot has the focus and the label search elsewhere;
    Esc cancels a lasso being drawn and otherwise clears the selection. (Two shortcuts on one key
    used to cancel each other: Qt's "ambiguous overload", and neither fired.)"""
    path, info = project_copy
    win = open_window(qtbot, path)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    sc, panel = win.scatter_view, win.labels_panel
    win.samples_list.setFocus()
    vp = sc.plot.viewport()  # a click on the plot gives it the focus, as a user's does
    qtbot.mouseClick(vp, Qt.LeftButton, pos=QPoint(vp.width() // 2, vp.height() // 2))
    qtbot.waitUntil(sc.plot.hasFocus, timeout=3000)
    for key, tool in ((Qt.Key_L, "lasso"), (Qt.Key_B, "box"), (Qt.Key_P, "pan"), (Qt.Key_L, "lasso")):
        qtbot.keyClick(sc.plot, key)
        assert sc.tool == tool
    assert not panel.search.hasFocus()
    # a lasso being drawn: Esc drops it and keeps the selection
    some = info["mask_ids"][:3]
    win.selection.select(some)
    sc._drag_path = [(0.0, 0.0), (1.0, 1.0)]  # as a mouse drag leaves it mid-way
    qtbot.keyClick(sc.plot, Qt.Key_Escape)
    assert sc._drag_path == [] and list(win.selection.ids) == list(some)
    # no lasso: Esc is the window's "Clear selection"
    qtbot.keyClick(sc.plot, Qt.Key_Escape)
    assert len(win.selection.ids) == 0
    # outside the plot, L opens the label search
    win.samples_list.setFocus()
    qtbot.waitUntil(win.samples_list.hasFocus, timeout=3000)
    qtbot.keyClick(win.samples_list, Qt.Key_L)
    qtbot.waitUntil(panel.search.hasFocus, timeout=3000)
    assert sc.tool == "lasso"
    assert not [r for r in qtlog.records if "mbiguous" in r.message]
    # Help > Keyboard shortcuts lists the keys that work, read from the live window
    from app._qt.shortcuts import shortcut_rows

    rows = shortcut_rows(win)
    for row in (("Window", "Esc", "Clear selection"), ("Window", "Ctrl+Z", "Undo"),
                ("Window", "L", "Search labels"),
                ("Window", "2", f"Toggle label 2: {win.model.label_names()[1]}"),
                ("Window", "9", "Toggle label 9 (none yet)"), ("Window", "F1", "Keyboard shortcuts")):
        assert row in rows, row
    scatter = {k: w for where, k, w in rows if where.startswith("Latent scatter")}
    assert scatter == {"L": "Lasso tool", "B": "Box tool", "P": "Pan tool", "R": "Show all points",
                       "Esc": "Cancel the lasso or box being drawn"}
    assert ("Gallery (when its grid has the focus and tiles are picked)", "1-9",
            "Give the picked tiles that label (not the whole selection)") in rows
    dlg = win._shortcuts()
    assert "Lasso tool" in dlg.findChild(QTextBrowser).toPlainText()
    dlg.close()
