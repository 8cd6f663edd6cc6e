"""The headless workflow the app drives, on real BreastMNIST ultrasound: import, an embedding,
clustering, a development set, Algorithm 1 in the project, evaluation tables and exports."""
import numpy as np
import pandas as pd
import pytest

from tests.conftest import DATA, need


@pytest.fixture(scope="module")
def breast_project(tmp_path_factory):
    from core.cluster import kmeans
    from core.io.importer import import_source
    from core.project import Project
    from core.projection import pca_project

    path = tmp_path_factory.mktemp("wf") / "breast"
    project = Project.create(path)
    import_source(project, need(DATA / "breastmnist" / "breastmnist.npz"))
    df = project.samples()
    ids = df["id"].tolist()
    x = project.load_stack(ids).reshape(len(ids), -1).astype(np.float32) / 255
    feats = pca_project(x, fit_mask=(df["split"] == "train").to_numpy(), n_components=20)
    run = project.create_run("pixels-pca20", {})
    project.update_run(run, status="finished", finished=True)
    project.arrays.save(f"embeddings/run-{run:04d}", feats, ids=ids)
    assign = kmeans(feats, 8, seed=0)
    # one cluster made of test samples only, so it has no development sample
    assign = np.where(df["split"].to_numpy() == "test", np.where(assign == 0, 8, assign), assign)
    project.save_clustering("pix-k9", ids, assign, run_id=run)
    project.set_meta("active_clustering", "pix-k9")
    train = df[df["split"] == "train"]["id"].tolist()
    project.set_dev(train[::10], author="annotator")
    yield project, run, ids, assign
    project.close()


def test_algorithm1_stores_dev_means_and_flags_unmatched(breast_project):
    from core.cluster.mapping import cluster_rows, run_algorithm1

    project, run, ids, assign = breast_project
    result = run_algorithm1(project, "pix-k9")
    assert 8 in result["unmatched"]
    names = project.label_names()
    dev = set(project.dev_ids())
    y = project.label_matrix(ids, names)
    for k, vec in result["vectors"].items():
        members = [i for i, (s, a) in enumerate(zip(ids, assign)) if a == k and s in dev]
        assert result["counts"][k] == len(members)
        for j, n in enumerate(names):
            assert vec[n] == pytest.approx(y[members, j].mean())
    rows = {r["cluster"]: r for r in cluster_rows(project, "pix-k9")}
    assert rows[8]["unmatched"] and rows[8]["algorithm1"] is None
    assert sum(r["size"] for r in rows.values()) == len(ids)
    assert all(0.5 <= r["purity"] <= 1 for r in rows.values() if r["purity"] is not None)


def test_manual_override_is_undoable(breast_project):
    from core.cluster.mapping import cluster_rows

    project, *_ = breast_project
    name = project.label_names()[0]
    project.set_cluster_label("pix-k9", 8, {name: 1.0}, author="surgeon")
    rows = {r["cluster"]: r for r in cluster_rows(project, "pix-k9")}
    assert rows[8]["manual"] == {name: 1.0} and not rows[8]["unmatched"]
    project.undo()
    rows = {r["cluster"]: r for r in cluster_rows(project, "pix-k9")}
    assert rows[8]["manual"] is None


def test_evaluation_tables(breast_project):
    from core.cluster.mapping import run_algorithm1
    from core.evaluation import evaluate_run

    project, run, *_ = breast_project
    run_algorithm1(project, "pix-k9")
    ev = evaluate_run(project, run, clustering="pix-k9", split="test")
    retrieval = ev.tables["Retrieval mAP"].set_index("class")
    assert 0 < retrieval.loc["overall", "mAP"] <= 1
    assert retrieval.loc["overall", "n"] == 156
    clustering = ev.tables["Clustering"].iloc[0]
    assert 0 <= clustering["nmi"] <= 1 and 0.5 <= clustering["purity"] <= 1
    f1 = ev.tables["Algorithm 1 per-class F1"].set_index("class")
    assert "weighted avg" in f1.index
    assert ev.curves["Retrieval precision-recall"]


def test_exports_round_trip(breast_project, tmp_path):
    from core.export import (array_table, cluster_mapping_table, export_all, labels_table,
                             selection_manifest, write_table)

    project, run, ids, _ = breast_project
    labels = labels_table(project)
    assert len(labels) == len(ids)  # one label per BreastMNIST image
    write_table(labels, tmp_path / "labels.parquet")
    back = pd.read_parquet(tmp_path / "labels.parquet")
    assert back["sample_id"].tolist() == labels["sample_id"].tolist()
    mapping = cluster_mapping_table(project, "pix-k9")
    assert mapping["size"].sum() == len(ids)
    emb = array_table(project, f"embeddings/run-{run:04d}")
    assert emb.shape == (len(ids), 21)
    manifest = selection_manifest(project, ids[:5])
    assert manifest.columns[0] == "path" and len(manifest) == 5
    files = export_all(project, tmp_path / "all")
    assert {f.name for f in files} >= {"labels.csv", "clusters_pix-k9.csv"}
    with pytest.raises(ValueError, match="csv or .parquet"):
        write_table(labels, tmp_path / "labels.xlsx")
