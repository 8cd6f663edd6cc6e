"""Journeys a user takes: evaluating a run that is not the active one uses that run's own
clustering (the export-selection journey is in test_trust_import)."""
from __future__ import annotations

import numpy as np

from core.evaluation import evaluate_run
from core.io import import_source
from core.project import Project
from tests.conftest import DATA, need


def test_evaluating_a_run_uses_its_own_clustering_not_the_active_one(tmp_path):
    with Project.create(tmp_path / "p") as p:
        import_source(p, need(DATA / "breastmnist" / "breastmnist.npz"))
        test = p.samples(split="test")
        ids = test["id"].tolist()
        x = p.load_stack(ids).reshape(len(ids), -1).astype(np.float32) / 255.0
        y = p.label_matrix(ids).argmax(1)
        for method in ("pica", "deepcluster"):
            p.create_run(method, {})
        # run 1: pixels, clustered by the labels' halves; run 2: its own, different clusters
        p.arrays.save("embeddings/run-0001", x, ids=ids)
        p.arrays.save("embeddings/run-0002", x[:, ::-1].copy(), ids=ids)
        p.save_clustering("run-0001-head", ids, y, run_id=1)
        p.save_clustering("run-0002-kmeans3", ids, np.arange(len(ids)) % 3, run_id=2)
        p.set_meta("active_run", "2")
        p.set_meta("active_clustering", "run-0002-kmeans3")
        ev = evaluate_run(p, 1, split="test")
        row = ev.tables["Clustering"].iloc[0]
        assert row["clustering"] == "run-0001-head"
        assert row["nmi"] > 0.99                        # the clustering equal to the labels
        ev2 = evaluate_run(p, 2, split="test")
        assert ev2.tables["Clustering"].iloc[0]["clustering"] == "run-0002-kmeans3"
