"""Algorithm 1 (cluster -> mean development-set label vector) and the cluster / match CLI."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA, need
from core.cluster import (fit_cluster_thresholds, match_clusters, match_to_vectors, predict_from_clusters,
                          save_match)


def _hand_case():
    # labels: liver, kidney, gallbladder; 4 clusters, cluster 2 gets no development sample
    assign = np.array([0, 0, 0, 0, 1, 1, 1, 3, 3])
    y = np.array([[1, 0, 1],   # liver + gallbladder
                  [1, 0, 0],
                  [1, 0, 1],
                  [1, 0, 0],
                  [0, 1, 0],
                  [0, 1, 0],
                  [0, 0, 0],   # none of the three: "other"
                  [0, 0, 0],
                  [1, 1, 0]])
    return assign, y


def test_mean_label_vectors_with_other_column_and_unmatched_cluster():
    assign, y = _hand_case()
    m = match_clusters(assign, y, 4)
    assert m.vectors.shape == (4, 4)  # K x (C + 1)
    np.testing.assert_allclose(m.vectors[0], [1.0, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(m.vectors[1], [0.0, 2 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(m.vectors[3], [0.5, 0.5, 0.0, 0.5])
    assert np.isnan(m.vectors[2]).all()  # unmatched: not silently zero
    assert m.counts.tolist() == [4, 3, 0, 2]
    assert m.matched.tolist() == [True, True, False, True]
    assert m.unmatched.tolist() == [2]
    vectors, counts = m  # unpacks as (vectors, counts)
    assert counts is m.counts


def test_without_other_column_and_single_label_ids_are_one_hot():
    assign, y = _hand_case()
    assert match_clusters(assign, y, 4, other=False).vectors.shape == (4, 3)
    m = match_clusters(np.array([0, 0, 1]), np.array([2, 2, 0]), 2, n_classes=3, other=False)
    np.testing.assert_allclose(m.vectors, [[0, 0, 1], [1, 0, 0]])


def test_prediction_thresholds_per_class_and_unmatched_predict_nothing():
    assign, y = _hand_case()
    m = match_clusters(assign, y, 4)
    pred = predict_from_clusters(m, np.array([0, 1, 2, 3]), thresholds=[0.5, 0.6, 0.5, 0.9])
    assert pred.tolist() == [[True, False, True, False],
                             [False, True, False, False],
                             [False, False, False, False],   # cluster 2 is unmatched
                             [True, False, False, False]]


def test_thresholds_maximise_f1_on_validation():
    assign, y = _hand_case()
    m = match_clusters(assign, y, 4)
    # validation: cluster 3 members are kidney-only, cluster 0 members liver-only
    val_assign = np.array([0, 0, 3, 3, 2])
    val_y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]])
    th = fit_cluster_thresholds(m, val_assign, val_y)
    pred = predict_from_clusters(m, val_assign, th)
    # liver: score 1.0 in cluster 0 vs 0.5 in cluster 3 -> threshold above 0.5; kidney: 0.5 in 3, 0 in 0
    assert pred[:4, 0].tolist() == [True, True, False, False]
    assert pred[:4, 1].tolist() == [False, False, True, True]
    assert not pred[4].any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="label rows"):
        match_clusters(np.array([0, 1]), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match="out of range"):
        match_clusters(np.array([0, 5]), np.zeros((2, 2)), 3)


def test_vectors_stored_in_project(tmp_path):
    from core.project import Project, SampleRecord

    p = Project.create(tmp_path / "proj")
    ids = [f"s{i}" for i in range(9)]
    p.add_samples([SampleRecord(id=s, dataset="d", source_path=s, modality="US", kind="image2d") for s in ids])
    assign, y = _hand_case()
    p.save_clustering("c", ids, assign)
    m = match_clusters(assign, y, 4)
    vectors, counts = match_to_vectors(m, ["liver", "kidney", "gallbladder"])
    assert set(vectors) == {0, 1, 3} and counts[2] == 0
    save_match(p, "c", m, ["liver", "kidney", "gallbladder"])
    df = p.cluster_vectors("c")
    assert sorted(df["cluster"]) == [0, 1, 3]
    row = df[df["cluster"] == 1].iloc[0]
    assert row["vector"]["kidney"] == pytest.approx(2 / 3) and row["vector"]["other"] == pytest.approx(1 / 3)
    assert int(row["n_dev"]) == 3


def test_cluster_and_match_cli_on_breastmnist(tmp_path, capsys):
    """k-means on a pixel embedding of real BreastMNIST, then Algorithm 1 from 10 % of the labels."""
    from core.cli import main
    from core.project import Project

    src = need(DATA / "breastmnist" / "breastmnist.npz")
    proj = tmp_path / "p"
    assert main(["import", "--project", str(proj), str(src)]) == 0
    p = Project.open(proj)
    df = p.samples()
    x = p.load_stack(df["id"].tolist()).reshape(len(df), -1).astype(np.float32) / 255
    run = p.create_run("pixels", {})
    p.arrays.save(f"embeddings/run-{run:04d}", x, ids=df["id"].tolist())
    capsys.readouterr()
    assert main(["cluster", "--project", str(proj), "--run", str(run), "--k", "6"]) == 0
    out = capsys.readouterr().out
    assert f"run-{run:04d}-kmeans6" in out and "NMI" in out
    name = f"run-{run:04d}-kmeans6"
    ids, assign = p.load_clustering(name)
    assert len(ids) == len(df) and assign.max() == 5

    assert main(["match", "--project", str(proj), "--clustering", name,
                 "--dev-from", "labels-fraction=0.1", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "weighted avg" in out and "F1-score" in out and "single-label accuracy" in out
    vec = p.cluster_vectors(name)
    assert len(vec) >= 1 and set(vec["vector"].iloc[0]) == {"malignant", "normal_or_benign", "other"}

    # a subset re-clustering from an ids file
    sub = tmp_path / "ids.txt"
    sub.write_text("\n".join(df["id"].tolist()[:50]))
    assert main(["cluster", "--project", str(proj), "--run", str(run), "--k", "3", "--ids-file", str(sub)]) == 0
    ids, assign = p.load_clustering(f"run-{run:04d}-kmeans3-subset")
    assert len(ids) == 50
    # the project's own dev set is empty: a clear error, not a crash
    assert main(["match", "--project", str(proj), "--clustering", name]) == 2
    assert "development set is empty" in capsys.readouterr().err
