"""Hungarian accuracy, NMI, ARI against PICA's evaluate(); NMI variants against DeepCluster; purity."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_reference
from core.metrics.clustering import (ari, clustering_scores, hungarian_accuracy, hungarian_mapping, nmi, purity,
                                     reference_labels)


def test_hungarian_nmi_ari_match_pica_evaluate():
    d = load_reference("pica_eval_hungarian.npz")
    assert hungarian_accuracy(d["labels"], d["predicts"]) == pytest.approx(float(d["acc"]), abs=1e-7)
    assert nmi(d["labels"], d["predicts"]) == pytest.approx(float(d["nmi"]), rel=1e-9)
    assert ari(d["labels"], d["predicts"]) == pytest.approx(float(d["ari"]), rel=1e-9)
    s = clustering_scores(d["labels"], d["predicts"])
    assert s["acc"] == pytest.approx(float(d["acc"]))


def test_nmi_arithmetic_and_geometric_match_deepcluster():
    d = load_reference("deepcluster_nmi.npz")
    assert nmi(d["assign_prev"], d["assign_cur"]) == pytest.approx(float(d["nmi_arithmetic"]), rel=1e-9)
    assert nmi(d["assign_prev"], d["assign_cur"], average_method="geometric") == pytest.approx(
        float(d["nmi_geometric"]), rel=1e-9)


def test_hungarian_is_label_permutation_invariant_and_handles_more_clusters():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert hungarian_accuracy(labels, np.array([5, 5, 3, 3, 9, 9])) == 1.0
    assert hungarian_mapping(labels, np.array([5, 5, 3, 3, 9, 9])) == {5: 0, 3: 1, 9: 2}
    # four clusters for three classes: only three can be matched one-to-one
    assert hungarian_accuracy(labels, np.array([0, 0, 1, 1, 2, 3])) == pytest.approx(5 / 6)


def test_purity_is_deepmcat_equation_3():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    # cluster 0: {0,0,2} -> 2; cluster 1: {0,1,1} -> 2; cluster 2: {2,2} -> 2
    assert purity(labels, clusters) == pytest.approx(6 / 8)
    assert purity(labels, np.arange(8)) == 1.0  # one sample per cluster is trivially pure


def test_reference_labels_single_multi_and_unlabelled():
    single = np.eye(3)[[2, 0, 1]]
    assert reference_labels(single).tolist() == [2, 0, 1]
    multi = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    ref = reference_labels(multi)
    assert ref[0] == ref[2] != ref[1] and ref[3] == -1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="labels"):
        nmi([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="one integer label"):
        purity(np.zeros((3, 2)), [0, 1, 2])
