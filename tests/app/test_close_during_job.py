"""Closing the main window while a background job runs: the job is cancelled and its worker
thread ends before the window (and the project) go away, so the app exits cleanly instead of
aborting with "terminate called without an active exception" (a thread still inside torch)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_modal_dialogs(monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: QMessageBox.Ok)


def test_closing_the_window_cancels_a_running_training_job(qtbot, project_copy):
    from app._qt.jobs import running_jobs
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    path, _ = project_copy
    model = ProjectModel.open(path, author="tester")
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    panel = win.panels["Training"]
    qtbot.waitUntil(lambda: panel.form is not None, timeout=120_000)  # built after the first paint
    panel.select_method("deepdiffusion")
    panel.form.set_values({"epochs": 500, "batch_size": 8, "out_dim": 16, "eval_every": 0, "device": "cpu"})
    steps = []
    qjob = panel.start()
    qjob.progress.connect(lambda p: steps.append(p.global_step) if p.losses else None)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=180_000)
    job = qjob.job
    assert qjob in running_jobs()

    win.close()  # the job is still training: far from its 500 epochs

    assert job.status == "cancelled", job.status
    assert job._thread is not None and not job._thread.is_alive()
    assert not running_jobs()
    from core.project import Project

    with Project.open(path) as project:  # recorded before the project closed
        assert project.run(job.run_id)["status"] == "cancelled"
