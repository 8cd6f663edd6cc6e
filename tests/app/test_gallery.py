"""The selection as a gallery (issue 14 item 7): a thumbnail grid of the selection, sorted by
distance to the selection's centre (against a float64 oracle), by label or by prediction, and
labelled from directly. On the shared-data test project (AdrenalMNIST3D masks)."""
import numpy as np


def _gallery(qtbot, model):
    from app._qt.gallery import GalleryView
    from app.components import Selection

    sel = Selection()
    g = GalleryView(model, sel)
    qtbot.addWidget(g)
    g.resize(900, 500)
    g.show()
    return g, sel


def test_grid_sorts_and_fills(qtbot, model):
    g, sel = _gallery(qtbot, model)
    ids, emb = model.embedding()
    chosen = [str(s) for s in ids[:30]]
    sel.select(chosen)
    qtbot.waitUntil(lambda: g.grid.count() == 30 and g.is_filled(), timeout=20_000)
    assert set(g.shown) == set(chosen)
    # distance to centre, float64 oracle
    x = np.asarray(emb[:30], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = x.mean(0) / np.linalg.norm(x.mean(0))
    oracle = [chosen[i] for i in np.argsort(1 - x @ c, kind="stable")]
    assert g.shown == oracle
    g.sort_box.setCurrentText("label")
    labels = model.labels()
    keys = [(not labels.get(s), ", ".join(labels.get(s, []))) for s in g.shown]
    assert keys == sorted(keys)
    g.sort_box.setCurrentText("prediction")
    assert len(g.shown) == 30
    # every tile got a real thumbnail (not the blank placeholder)
    qtbot.waitUntil(g.is_filled, timeout=20_000)
    icon = g.grid.item(0).icon().pixmap(g.thumb_size).toImage()
    assert icon.width() > 0


def test_label_from_the_gallery(qtbot, model):
    g, sel = _gallery(qtbot, model)
    labels = model.labels()
    normal = [s for s, v in labels.items() if v == ["normal"]][:6]
    unl = [s for s, v in labels.items() if not v][:4]
    sel.select(normal + unl)
    qtbot.waitUntil(lambda: g.grid.count() == 10, timeout=20_000)
    g.pick(normal[:3] + unl[:2])
    assert set(g.picked_ids()) == set(normal[:3] + unl[:2])
    g.label_box.setCurrentText("hyper")  # type-to-search
    n = g.apply_label(g.label_box.currentText(), g.picked_ids())
    assert n == 5
    after = model.project.labels(normal + unl)
    assert all(after[s] == ["hyperplasia"] for s in normal[:3] + unl[:2])  # replaced (single-label)
    assert all(after[s] == ["normal"] for s in normal[3:])
    # captions follow the edit; the selection itself is unchanged
    qtbot.waitUntil(lambda: any("hyperplasia" in g.grid.item(i).text() for i in range(g.grid.count())), timeout=5000)
    assert set(sel.ids) == set(normal + unl)
    model.undo()
    assert model.project.labels(normal[:1])[normal[0]] == ["normal"]


def test_number_keys_label_the_picked_tiles_not_the_whole_selection(qtbot, model):
    """In a window whose keys 1-9 label the selection, the same keys in the gallery grid label
    only the tiles picked there; with none picked they stay the window's."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QMainWindow

    from app._qt.gallery import GalleryView
    from app._qt.labels_panel import LabelsPanel
    from app.components import Selection

    sel = Selection()
    win = QMainWindow()
    panel = LabelsPanel(model, sel)
    panel.install_shortcuts(win)
    g = GalleryView(model, sel)
    win.setCentralWidget(g)
    qtbot.addWidget(win)
    win.resize(900, 500)
    win.show()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    labels = model.labels()
    normal = [s for s, v in labels.items() if v == ["normal"]][:8]
    sel.select(normal)
    qtbot.waitUntil(lambda: g.grid.count() == 8, timeout=20_000)
    names = model.label_names()
    key = Qt.Key_1 + names.index("hyperplasia")
    g.pick(normal[:2])
    g.grid.setFocus()
    qtbot.waitUntil(g.grid.hasFocus, timeout=3000)
    qtbot.keyClick(g.grid, key)
    after = model.project.labels(normal)
    assert [after[s] for s in normal[:2]] == [["hyperplasia"]] * 2
    assert all(after[s] == ["normal"] for s in normal[2:])         # the rest of the selection kept
    model.undo()
    assert model.project.labels(normal[:2]) == {s: ["normal"] for s in normal[:2]}
    # nothing picked: the key is the window's again (the whole selection)
    g.pick([])
    qtbot.keyClick(g.grid, key)
    assert all(v == ["hyperplasia"] for v in model.project.labels(normal).values())
