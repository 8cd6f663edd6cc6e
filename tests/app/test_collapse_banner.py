"""A collapsed embedding is visible (issue 14 item 4): a banner on the scatter, and neighbour
distances with 4 significant digits instead of d=0.000. The collapsed run is the test
project's real shape features squeezed towards their mean (what a diverged run produces)."""
import numpy as np


def _collapse_active_run(model, scale=1e-5):
    name = model.run_name()
    ids, x = model.project.arrays.load(f"embeddings/{name}")
    x = np.asarray(x, dtype=np.float64)
    c = x.mean(0) + scale * (x - x.mean(0))
    model.project.arrays.save(f"embeddings/{name}", c.astype(np.float32), ids=ids)
    model.run_changed.emit(model.active_run)
    return ids, c


def test_banner_on_collapsed_embedding_and_four_digit_distances(qtbot, project_copy):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    win = MainWindow(ProjectModel.open(project_copy[0], author="tester"))
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    banner = win.health_banner
    assert not banner.isVisible()
    ids, c = _collapse_active_run(win.model)
    qtbot.waitUntil(banner.isVisible, timeout=5000)
    assert "collapsed" in banner.text() and banner.width() > 400
    # neighbour distances: tiny but distinct, written with 4 significant digits
    sid = str(ids[0])
    win.selection.select([sid], current=sid)
    nv = win.neighbours_view
    qtbot.waitUntil(lambda: nv.result is not None and nv.result.query == sid, timeout=5000)
    dists = [n.distance for n in nv.result.neighbours]
    assert 0 < min(dists) < 1e-6
    # float64 oracle of the cosine distances
    u = c / np.linalg.norm(c, axis=1, keepdims=True)
    oracle = np.sort(np.delete(1 - u @ u[0], 0))[:len(dists)]
    np.testing.assert_allclose(dists, oracle, rtol=2e-2, atol=1e-10)
    captions = [t.findChildren(type(nv.header))[-1].text() for t in nv.tiles()]
    assert all("d=0.000" not in cap and "e-" in cap for cap in captions), captions
    win.close()
