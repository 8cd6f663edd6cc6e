"""Predictions a user can trust (issue 14 item 5): each prediction shows its score and support,
a cluster mapped from one development sample is flagged "low support", and a sample without a
prediction says why. Algorithm 1 runs for real on the test project's clustering."""
import numpy as np


def _setup(model, dev_in_first: int):
    from core.cluster.mapping import run_algorithm1

    project = model.project
    ids, assign = project.load_clustering(model.active_clustering)
    ids = np.asarray(ids)
    labelled = {i for i, v in project.labels(list(ids)).items() if v}
    project.set_dev(list(project.dev_ids()), False)
    sizes = np.bincount(assign)
    order = np.argsort(-sizes)
    big, small, empty = int(order[0]), int(order[1]), int(order[2])
    dev = [s for s in ids[assign == big] if s in labelled][:dev_in_first]
    dev += [s for s in ids[assign == small] if s in labelled][:1]
    project.set_dev(dev, True)
    run_algorithm1(project, model.active_clustering)
    model.clustering_changed.emit(model.active_clustering)
    return ids, assign, big, small, empty


def test_support_score_low_support_and_why_none(qtbot, model):
    from app._qt.neighbours import NeighboursView
    from app.components import Selection
    from app.components.predictions import cluster_predictions, prediction_for

    ids, assign, big, small, empty = _setup(model, dev_in_first=6)
    preds = cluster_predictions(model.project, model.active_clustering)
    assert preds[big].support == 6 and not preds[big].low_support
    assert preds[small].support == 1 and preds[small].low_support and preds[small].score == 1.0
    assert not preds[empty].labels and "no development-set sample" in preds[empty].reason

    sel = Selection()
    view = NeighboursView(model, sel)
    qtbot.addWidget(view)
    view.show()
    for k, expect in ((big, "support 6 dev samples"), (small, "LOW SUPPORT"), (empty, "none: cluster")):
        sid = str(ids[assign == k][0])
        sel.select([sid], current=sid)
        qtbot.waitUntil(lambda sid=sid: view.result is not None and view.result.query == sid, timeout=5000)
        assert expect in view.header.text(), view.header.text()
        assert prediction_for(model, sid).cluster == k


def test_below_threshold_says_why(model):
    from app.components.predictions import cluster_predictions

    project = model.project
    ids, assign = project.load_clustering(model.active_clustering)
    k = int(assign[0])
    project.save_cluster_vectors(model.active_clustering, {k: {"normal": 0.3, "hyperplasia": 0.25}}, {k: 20})
    p = cluster_predictions(project, model.active_clustering)[k]
    assert not p.labels and "no label reaches 0.50" in p.reason and "normal 0.30" in p.reason
    assert p.describe().startswith("none:")
