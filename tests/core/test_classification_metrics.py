"""Per-class precision/recall/F1 (the ultrasound paper's Table 1) and F1-maximising thresholds."""
import numpy as np
import pytest

from core.metrics.classification import (apply_thresholds, best_f1_thresholds, combination_vocabulary,
                                         per_class_scores, report_table, single_label_accuracy)


def test_per_class_scores_hand_case():
    # 5 images, 3 classes (liver, kidney, other); counted by hand:
    # liver: tp 2, predicted 3, true 3 -> P 2/3, R 2/3, F1 2/3
    # kidney: tp 1, predicted 1, true 2 -> P 1, R 1/2, F1 2/3
    # other: tp 0, predicted 1, true 0 -> P 0, R 0 (no support), F1 0
    y_true = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    y_pred = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1]])
    df = per_class_scores(y_true, y_pred, ["liver", "kidney", "other"])
    np.testing.assert_allclose(df.loc["liver", ["precision", "recall", "f1"]].to_numpy(float), [2 / 3] * 3)
    np.testing.assert_allclose(df.loc["kidney", ["precision", "recall", "f1"]].to_numpy(float),
                               [1, 0.5, 2 / 3])
    np.testing.assert_allclose(df.loc["other", ["precision", "recall", "f1"]].to_numpy(float), [0, 0, 0])
    assert df["n_labels"].tolist() == [3, 2, 0, 5]
    # weighted by support 3:2:0
    np.testing.assert_allclose(df.loc["weighted avg", "precision"], (3 * 2 / 3 + 2 * 1) / 5)
    np.testing.assert_allclose(df.loc["weighted avg", "recall"], (3 * 2 / 3 + 2 * 0.5) / 5)
    np.testing.assert_allclose(df.loc["weighted avg", "f1"], 2 / 3)
    # agrees with scikit-learn's multilabel report
    from sklearn.metrics import precision_recall_fscore_support
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    np.testing.assert_allclose(df.loc["weighted avg", ["precision", "recall", "f1"]].to_numpy(float), [p, r, f])
    text = report_table(df)
    assert "F1-score" in text and "weighted avg" in text and "66.67" in text


def test_best_f1_thresholds_hand_case():
    y = np.array([[1, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.3], [0.8, 0.1], [0.7, 0.9], [0.4, 0.2], [0.2, 0.5]])
    th = best_f1_thresholds(y, s)
    # class 0: >=0.9 F1 .5, >=0.8 F1 .8, >=0.7 F1 2*2/(3+3)=.667, >=0.4 F1 2*3/(4+3)=.857, >=0.2 F1 .75
    assert th[0] == pytest.approx(0.4)
    assert th[1] == 0.5  # no positive: cannot be tuned, the default
    pred = apply_thresholds(s, th)
    np.testing.assert_array_equal(pred[:, 0], [1, 1, 1, 1, 0])
    assert per_class_scores(y[:, :1], pred[:, :1]).loc["0", "f1"] == pytest.approx(6 / 7)


def test_thresholds_ties_and_brute_force():
    rng = np.random.default_rng(0)
    y = rng.random((60, 4)) < 0.3
    y[0] = True
    s = np.round(rng.random((60, 4)) + 0.4 * y, 1)  # coarse scores: many ties
    th = best_f1_thresholds(y, s)
    for c in range(4):
        best = max(per_class_scores(y[:, [c]], (s[:, [c]] >= t)).iloc[0]["f1"] for t in np.unique(s[:, c]))
        got = per_class_scores(y[:, [c]], s[:, [c]] >= th[c]).iloc[0]["f1"]
        assert got == pytest.approx(best)


def test_bad_shapes_and_accuracy():
    with pytest.raises(ValueError, match="differ in shape"):
        per_class_scores(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="N x C"):
        best_f1_thresholds(np.zeros(3), np.zeros(3))
    assert single_label_accuracy([0, 2, 1], np.eye(3)[[0, 2, 2]]) == pytest.approx(2 / 3)


def test_combination_vocabulary():
    y = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 1], [1, 0, 0]])
    v = combination_vocabulary(y)
    np.testing.assert_array_equal(v, [[1, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert len(combination_vocabulary(y, 2)) == 2
