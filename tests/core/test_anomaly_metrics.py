"""Anomaly metrics and label fractions against the reference (paranasal_eval_auprc.npz)."""
import numpy as np
import pytest

from tests.conftest import load_reference


def test_metrics_match_reference():
    from core.metrics.anomaly import (anomaly_report, auprc, auroc, f1_best_threshold, metrics_at_threshold,
                                      roc_fpr_threshold)

    ref = load_reference("paranasal_eval_auprc.npz")
    s, y = ref["scores"], ref["labels"]
    assert auroc(s, y) == pytest.approx(float(ref["AUC"]), abs=1e-12)
    assert auprc(s, y) == pytest.approx(float(ref["AUPRC"]), abs=1e-12)
    t = f1_best_threshold(s, y)
    assert t == pytest.approx(float(ref["thresh_prc_bestF1"]), abs=1e-12)
    for p, key in ((0.01, "1p"), (0.05, "5p"), (0.10, "10p")):
        assert roc_fpr_threshold(s, y, p) == pytest.approx(float(ref[f"thresh_roc_fpr{key}"]), abs=1e-12)
    m = metrics_at_threshold(s, y, t)
    for k in ("precision", "recall", "f1", "specificity", "accuracy"):
        assert m[k] == pytest.approx(float(ref[f"{k}_at_thresh"]), abs=1e-12), k
    rep = anomaly_report(s, y, threshold=t)
    assert rep["auprc"] == pytest.approx(float(ref["AUPRC"]))


def test_metrics_reject_bad_input():
    from core.metrics.anomaly import auprc

    with pytest.raises(ValueError, match="labels"):
        auprc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="scores"):
        auprc([0.1, 0.2, 0.3], [0, 1])


def test_label_fraction_is_stratified_nested_and_seeded():
    from core.label_fraction import fraction_record, stratified_fraction

    y = np.array([0] * 180 + [1] * 20 + [-1] * 7)
    ten = stratified_fraction(y, 0.1, seed=3)
    assert np.bincount(y[ten]).tolist() == [18, 2]          # class balance kept, unlabelled never picked
    twenty = stratified_fraction(y, 0.2, seed=3)
    assert set(ten) <= set(twenty)                          # nested
    assert np.array_equal(ten, stratified_fraction(y, 0.1, seed=3))
    assert not np.array_equal(ten, stratified_fraction(y, 0.1, seed=4))
    assert len(stratified_fraction(y, 1.0, seed=0)) == 200
    rec = fraction_record(y, 0.1, 3, ids=np.arange(len(y)))
    assert rec["seed"] == 3 and rec["per_class"] == {0: 18, 1: 2} and len(rec["ids"]) == 20
    with pytest.raises(ValueError):
        stratified_fraction(y, 0.0)
