"""kNN in the latent space (cosine) and the kNN label vote; the neighbours strip follows the
current sample."""
from __future__ import annotations

import numpy as np
import pytest

from app.components.neighbours import NeighbourIndex, knn_cosine, knn_vote, neighbours_of


def test_knn_cosine_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x[5] *= 40.0  # cosine ignores the norm
    for q in (0, 5, 199):
        idx, d = knn_cosine(x, q, k=7)
        x64 = x.astype(np.float64)  # the float64 oracle, not a second float32 path
        xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        ref = 1 - xn @ xn[q]
        ref[q] = np.inf
        order = np.argsort(ref, kind="stable")[:7]
        assert q not in idx
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_allclose(d, ref[order], rtol=0, atol=1e-6)  # rows normalised in float32
        assert np.all(np.diff(d) >= 0)


def test_knn_cosine_edge_cases():
    x = np.eye(3, dtype=np.float32)
    idx, d = knn_cosine(x, 0, k=10)  # k larger than the set: every other row
    assert sorted(idx.tolist()) == [1, 2]
    np.testing.assert_allclose(d, [1.0, 1.0])
    with pytest.raises(IndexError):
        knn_cosine(x, 3, k=1)


def test_knn_vote_weighted_and_confidence():
    label, conf, shares = knn_vote([["a"], ["b"], ["a"], []], distances=np.array([0.0, 0.1, 0.2, 0.0]))
    assert label == "a"
    w = [1.0, 0.95, 0.9]
    assert conf == pytest.approx((w[0] + w[2]) / sum(w))
    assert shares["b"] == pytest.approx(w[1] / sum(w))
    # a nearer "b" outweighs two far "a"s
    label, _, _ = knn_vote([["b"], ["a"], ["a"]], distances=np.array([0.0, 1.9, 1.9]))
    assert label == "b"
    # multi-label neighbours split their vote; no labelled neighbour -> no vote
    _, _, shares = knn_vote([["a", "b"]], weighted=False)
    assert shares == {"a": 0.5, "b": 0.5}
    assert knn_vote([[], []]) == ("", 0.0, {})


def test_neighbours_of_uses_the_active_embedding(model, project_copy):
    _, info = project_copy
    sid = info["mask_ids"][3]
    res = neighbours_of(model, sid, k=5)
    ids, emb = model.embedding()
    idx, dist = knn_cosine(emb, list(ids).index(sid), k=5)
    assert [n.id for n in res.neighbours] == [str(ids[i]) for i in idx]
    np.testing.assert_allclose([n.distance for n in res.neighbours], dist, atol=1e-6)
    labels = model.labels()
    assert [n.labels for n in res.neighbours] == [labels[n.id] for n in res.neighbours]
    assert res.predicted == model.predicted_labels()[sid]
    assert res.vote in ("normal", "hyperplasia")
    assert 0 < res.confidence <= 1
    # the CT volume is not in this embedding
    assert neighbours_of(model, info["ct_id"], k=5) is None
    assert NeighbourIndex(ids, emb).query(sid, 3)[0] == [n.id for n in res.neighbours[:3]]


def test_neighbours_view_follows_current(qtbot, model, project_copy):
    from app._qt.neighbours import NeighboursView
    from app.components import Selection

    _, info = project_copy
    sel = Selection()
    view = NeighboursView(model, sel)
    qtbot.addWidget(view)
    view.resize(900, 220)
    view.show()
    assert view.result is None and "no sample" in view.header.text()
    sid = info["mask_ids"][10]
    with qtbot.waitSignal(view.updated, timeout=5000):
        sel.select([sid], current=sid)
    assert view.result.query == sid
    assert len(view.tiles()) == view.k.value() == 8
    assert "Algorithm 1" in view.header.text() and "kNN vote" in view.header.text()
    view.k.setValue(3)
    assert len(view.tiles()) == 3
    # clicking a neighbour makes it the current sample
    first = view.tiles()[0].sid
    view.tiles()[0].clicked.emit(first)
    assert sel.current == first and view.result.query == first
    img = view.grab().toImage()
    assert img.width() > 0
    sel.select([info["ct_id"]], current=info["ct_id"])
    assert view.result is None and "not in the embedding" in view.header.text()
