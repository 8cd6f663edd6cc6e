"""The surgeon's path in the app: File > Import of a new mask into a trained project places it
at once (no restart, no retraining): it is selected and shown in the scatter, and the neighbours
strip shows its nearest known cases and the predicted class with its support; the cluster
mapping is untouched."""
from __future__ import annotations

import pytest

from tests.core.workflow_project import adrenal_copy, table_dump, trained_adrenal  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def no_dialogs(monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or QMessageBox.Ok)
    monkeypatch.setattr(QMessageBox, "show", lambda self: shown.append(self.text()))
    return shown


def test_import_places_a_new_mask_with_neighbours_and_prediction(qtbot, adrenal_copy, no_dialogs, tmp_path):
    import numpy as np

    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from tests.app.conftest import nonblank

    path, info = adrenal_copy
    model = ProjectModel.open(path, author="tester")
    mapping = table_dump(model.project, "cluster_labels")
    assignments = table_dump(model.project, "cluster_assignments")
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    n_before = len(model.samples)

    job = win.import_sources([info["masks"][150]], structures=[])
    qtbot.waitUntil(lambda: job.state in ("finished", "failed", "cancelled"), timeout=180_000)
    assert job.state == "finished", job.traceback
    qtbot.waitUntil(lambda: bool(model.placed_ids), timeout=10_000)
    (sid,) = model.placed_ids
    assert len(model.samples) == n_before + 1 and sid in model.samples.index
    win.samples_list.fill()
    assert win.samples_list.count_label.text() == f"{n_before + 1} / {n_before + 1}"
    # the new case is the current sample in every view
    assert win.selection.current == sid
    nv = win.neighbours_view
    qtbot.waitUntil(lambda: nv.result is not None and nv.result.query == sid, timeout=10_000)
    assert len(nv.result.neighbours) == nv.k.value() and sid not in {n.id for n in nv.result.neighbours}
    placement = model.placements[sid]
    assert [n.id for n in nv.result.neighbours][:3] == [n.id for n in placement.neighbours][:3]
    header = nv.header.text()
    assert "NEW CASE" in header and sid in header
    pred = placement.prediction
    if pred.labels:
        assert pred.labels[0] in header
        if pred.source == "algorithm1":
            assert f"support {pred.support}" in header
    # in the scatter, among the points of the active run
    if win.scatter_view is not None:
        qtbot.waitUntil(lambda: sid in set(win.scatter_view._ids), timeout=10_000)
    # the mapping and every existing assignment are untouched; the new case joined one cluster
    assert table_dump(model.project, "cluster_labels") == mapping
    after = table_dump(model.project, "cluster_assignments")
    assert set(assignments) <= set(after) and len(after) == len(assignments) + 1
    assert not [t for t in no_dialogs if "fail" in t.lower()], no_dialogs
    png = win.save_screenshot(tmp_path / "placed.png")
    from qtpy.QtGui import QImage

    img = QImage(str(png)).convertToFormat(QImage.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3]
    assert nonblank(arr.reshape(img.height(), img.width(), 3))
    win.close()
