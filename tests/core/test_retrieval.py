"""Retrieval mAP and PR curve against takahikof/DeepDiffusion utils/retrieval.py."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_reference
from core.metrics.retrieval import retrieval_map


def test_retrieval_matches_reference():
    d = load_reference("deepdiffusion_eval_retrieval.npz")
    r = retrieval_map(d["embedding"], d["labels"])
    assert r.map == pytest.approx(float(d["map_takahikof"]), abs=1e-12)
    assert r.map == pytest.approx(float(d["map_lopez"]), abs=1e-12)
    np.testing.assert_allclose(r.recall, d["rp_recall"], atol=1e-12)
    np.testing.assert_allclose(r.precision, d["rp_precision"], atol=1e-7)
    # per class and class-balanced are means of the same per-query APs
    lab = d["labels"]
    for c in np.unique(lab):
        assert r.map_per_class[str(c)] == pytest.approx(r.ap[lab == c].mean())
    assert r.map_balanced == pytest.approx(np.mean([r.ap[lab == c].mean() for c in np.unique(lab)]))


def test_ties_are_pessimistic_and_no_relevant_gives_one():
    # query 0: one same-class item at the same distance as an other-class item -> rank 2
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    lab = np.array([0, 0, 1, 2])
    r = retrieval_map(emb, lab, class_names=["a", "b", "c"])
    assert r.ap[0] == pytest.approx(0.5)
    assert r.ap[2] == 1.0 and r.ap[3] == 1.0
    assert set(r.map_per_class) == {"a", "b", "c"}


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="one per embedding row"):
        retrieval_map(np.zeros((3, 2)), np.zeros(2))
