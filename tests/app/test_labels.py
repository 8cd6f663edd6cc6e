"""Labelling: toggles and number keys on the selection, development set, undo/redo, the label
editor; every change is in the database at once, with author and time."""
from __future__ import annotations

import pytest
from qtpy.QtCore import Qt


@pytest.fixture
def panel(qtbot, model):
    from app._qt.labels_panel import LabelsPanel
    from app.components import Selection

    sel = Selection()
    p = LabelsPanel(model, sel)
    qtbot.addWidget(p)
    p.show()
    return p, sel


def _db_labels(path, ids):
    from core.project import Project

    with Project.open(path) as pr:
        return pr.labels(ids), pr


def test_toggle_assign_remove_undo_redo(panel, project_copy):
    p, sel = panel
    path, info = project_copy
    test_ids = [i for i in info["mask_ids"] if "/test/" in i][:3]
    sel.select(test_ids)
    assert all(not b.isChecked() for b in p.buttons.values())
    p.toggle("hyperplasia")
    assert p.buttons["hyperplasia"].isChecked()
    from core.project import Project

    with Project.open(path) as pr:  # another connection sees it at once: committed
        assert all(pr.labels(test_ids)[i] == ["hyperplasia"] for i in test_ids)
        author, time = pr.label_author(test_ids[0], "hyperplasia")
        assert author == "tester" and time
    p.toggle("hyperplasia")  # all have it -> removed from all
    assert all(p.model.labels()[i] == [] for i in test_ids)
    p.undo()
    assert all(p.model.labels()[i] == ["hyperplasia"] for i in test_ids)
    assert p.buttons["hyperplasia"].isChecked()
    p.undo()
    assert all(p.model.labels()[i] == [] for i in test_ids)
    assert not p.undo_btn.isEnabled()
    p.redo()
    assert all(p.model.labels()[i] == ["hyperplasia"] for i in test_ids)
    assert p.redo_btn.isEnabled()


def test_partial_selection_adds_to_all(panel, project_copy):
    p, sel = panel
    _, info = project_copy
    train = [i for i in info["mask_ids"] if "/train/" in i]
    labels = p.model.labels()
    mixed = [next(i for i in train if labels[i] == ["normal"]),
             next(i for i in train if labels[i] == ["hyperplasia"])]
    sel.select(mixed)
    assert not p.buttons["normal"].isChecked()
    assert p.buttons["normal"].font().italic()  # partly present
    p.toggle("normal")
    assert all("normal" in p.model.labels()[i] for i in mixed)


def test_number_keys_in_a_window(qtbot, model, project_copy):
    from qtpy.QtWidgets import QMainWindow

    from app._qt.labels_panel import LabelsPanel
    from app.components import Selection

    _, info = project_copy
    win = QMainWindow()
    sel = Selection()
    p = LabelsPanel(model, sel)
    win.setCentralWidget(p)
    p.install_shortcuts(win)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)  # shortcuts fire in the active window
    sid = [i for i in info["mask_ids"] if "/test/" in i][0]
    sel.select([sid])
    qtbot.keyClick(win, Qt.Key_2)
    assert model.labels()[sid] == ["hyperplasia"]
    # single-label data: a key replaces the label (one keystroke relabels)
    assert p.replace_mode
    qtbot.keyClick(win, Qt.Key_1)
    assert model.labels()[sid] == ["normal"]
    # add mode (multi-label): a key adds, the same key again removes
    p.replace_box.setChecked(False)
    qtbot.keyClick(win, Qt.Key_2)
    assert model.labels()[sid] == ["normal", "hyperplasia"]
    qtbot.keyClick(win, Qt.Key_2)
    assert model.labels()[sid] == ["normal"]
    qtbot.keyClick(win, Qt.Key_9)  # no ninth label: nothing happens
    assert model.labels()[sid] == ["normal"]


def test_dev_set_marking_and_undo(panel, project_copy):
    p, sel = panel
    path, info = project_copy
    val = [i for i in info["mask_ids"] if "/val/" in i][:4]
    sel.select(val)
    assert not p.dev_off.isEnabled()
    p.set_dev(True)
    assert set(val) <= set(p.model.project.dev_ids())
    assert p.dev_off.isEnabled()
    p.undo()
    assert not set(val) & set(p.model.project.dev_ids())


def test_label_editor(panel, project_copy):
    p, sel = panel
    _, info = project_copy
    p.add_label("uncertain", "#123456")
    assert "uncertain" in p.buttons and p.label_list.count() == 3
    assert p.model.label_colors()["uncertain"] == "#123456"
    sid = info["mask_ids"][0]
    sel.select([sid])
    p.toggle("uncertain")
    p.rename_label("uncertain", "review")
    assert "review" in p.buttons and "uncertain" not in p.buttons
    assert "review" in p.model.labels()[sid]
    p.set_colour("review", "#ff0000")
    assert p.model.label_colors()["review"] == "#ff0000"
    assert "#ff0000" in p.buttons["review"].styleSheet()
    p.remove_label("review")
    assert "review" not in p.model.label_names()
    assert "review" not in p.model.labels()[sid]
    n = len(p.model.label_names())
    p.add_label("normal")  # duplicate: refused with a message, not an exception
    assert len(p.model.label_names()) == n


@pytest.fixture(autouse=True)
def _no_modal_dialogs(monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: QMessageBox.Ok)
