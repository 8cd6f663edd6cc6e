"""core.workflows on real data: placing new AdrenalMNIST3D masks keeps everything the user made,
applying a run again never re-clusters, re-clustering is a new undoable clustering, Algorithm 1
has one semantics, UMAP lands under the key the app reads, evaluation uses the run's own
clustering, and a TotalSegmentator CT gives one structure's mesh and points."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need
from tests.core.workflow_project import CT, CT_SEG, adrenal_copy, table_dump, trained_adrenal  # noqa: F401

pytestmark = pytest.mark.slow


def _user_tables(project, clustering):
    return {
        "cluster_labels": table_dump(project, "cluster_labels"),
        "clusterings": table_dump(project, "clusterings"),
        "assignments": table_dump(project, "cluster_assignments"),
        "history": table_dump(project, "history"),
        "labels": table_dump(project, "labels"),
    }


def test_place_new_mask_keeps_mapping_overrides_and_assignments(adrenal_copy):
    from core.project import Project
    from core.workflows.derive import import_and_derive
    from core.workflows.mapping import cluster_predictions
    from core.workflows.place import Placer

    path, info = adrenal_copy
    project = Project.open(path)
    clustering, run = info["clustering"], info["run"]
    before = _user_tables(project, clustering)
    old_ids, old_emb = project.embedding(run)
    _, old_pca = project.projection(run, "pca")
    per_cluster = cluster_predictions(project, clustering)
    assert per_cluster[0].source == "manual"        # the override the fixture made

    mask = info["masks"][150]
    report = import_and_derive(project, [mask], dataset="query")
    assert len(report.sample_ids) == 1 and not report.points_failed
    sid = report.sample_ids[0]
    placer = Placer(project)
    assert placer.run_id == run and placer.clustering == clustering
    (p,) = placer.place([sid], k=5)

    after = _user_tables(project, clustering)
    # the mapping, the overrides, every clustering and every label are byte-identical
    for table in ("cluster_labels", "clusterings", "history", "labels"):
        assert after[table] == before[table], table
    # existing assignments are untouched; the new case is added to its nearest cluster
    assert set(before["assignments"]) <= set(after["assignments"])
    added = sorted(set(after["assignments"]) - set(before["assignments"]))
    assert added == [(clustering, sid, p.cluster)]
    # known embedding and PCA rows unchanged; the new case appended
    ids, emb = project.embedding(run)
    assert list(ids[:-1]) == list(old_ids) and ids[-1] == sid
    assert np.array_equal(emb[:-1], old_emb)
    pca_ids, pca = project.projection(run, "pca")
    assert np.array_equal(pca[:-1], old_pca) and pca_ids[-1] == sid

    # the prediction is the cluster's effective one, with its support
    expect = cluster_predictions(project, clustering)[p.cluster]
    assert p.prediction.labels == expect.labels and p.prediction.support == expect.support
    if p.prediction.source == "algorithm1":
        dev = set(project.dev_ids())
        members = [s for s, k in project.cluster_assignments(clustering).items() if k == p.cluster]
        assert p.prediction.support == sum(s in dev for s in members)
    # nearest known cases by cosine distance, against a float64 oracle
    assert len(p.neighbours) == 5 and sid not in {n.id for n in p.neighbours}
    known = old_emb.astype(np.float64)
    q = emb[-1].astype(np.float64)
    cos = 1 - known @ q / (np.linalg.norm(known, axis=1) * np.linalg.norm(q))
    order = np.argsort(cos, kind="stable")[:5]
    assert [n.id for n in p.neighbours] == [str(old_ids[i]) for i in order]
    np.testing.assert_allclose([n.distance for n in p.neighbours], cos[order], rtol=1e-6, atol=1e-9)
    labels = project.labels([n.id for n in p.neighbours])
    assert all(n.labels == labels[n.id] for n in p.neighbours)

    # placing it again does not duplicate anything
    (again,) = placer.place([sid], k=5)
    assert again.cluster == p.cluster and not again.embedded_now
    assert table_dump(project, "cluster_assignments") == after["assignments"]
    project.close()


def test_embed_again_keeps_the_clustering_and_its_mapping(adrenal_copy):
    from core.project import Project
    from core.workflows.apply import apply_run
    from core.workflows.derive import import_and_derive
    from core.workflows.runs import load_run_method, pick_run

    path, info = adrenal_copy
    project = Project.open(path)
    clustering = info["clustering"]
    import_and_derive(project, [info["masks"][151]], dataset="query")
    before = _user_tables(project, clustering)
    run = pick_run(project)
    lines = apply_run(project, load_run_method(run, project), int(run["id"]))
    after = _user_tables(project, clustering)
    assert after["cluster_labels"] == before["cluster_labels"]
    assert after["clusterings"] == before["clusterings"]
    assert set(before["assignments"]) <= set(after["assignments"])
    assert len(after["assignments"]) == len(before["assignments"]) + 1
    assert any("kept" in line for line in lines)
    assert project.active_clustering_name == clustering
    project.close()


def test_recluster_is_a_new_undoable_clustering(adrenal_copy):
    from core.project import Project
    from core.workflows.clustering import recluster

    path, info = adrenal_copy
    project = Project.open(path)
    old = info["clustering"]
    before = table_dump(project, "cluster_labels")
    new = recluster(project, k=3)
    assert new != old and new.startswith(f"run-{info['run']:04d}-kmeans3")
    assert project.active_clustering_name == new
    assert table_dump(project, "cluster_labels") == before   # the old mapping is intact
    assert project.has_clustering(old)
    assert project.undo()["kind"] == "clustering"
    assert not project.has_clustering(new) and project.active_clustering_name == old
    project.redo()
    assert project.has_clustering(new) and project.active_clustering_name == new
    project.close()


def test_algorithm1_other_column_support_and_effective_prediction(adrenal_copy):
    from core.project import Project
    from core.workflows.mapping import algorithm1, cluster_predictions, sample_predictions

    path, info = adrenal_copy
    project = Project.open(path)
    clustering = info["clustering"]
    r = algorithm1(project, clustering)
    names = project.label_names()
    assert r.columns == names + ["other"]
    ids, assign = project.load_clustering(clustering)
    dev = set(project.dev_ids())
    y = project.label_matrix(ids, names)
    for k, vec in r.vectors.items():
        rows = [i for i, (s, a) in enumerate(zip(ids, assign)) if a == k and s in dev]
        assert r.counts[k] == len(rows)
        for j, n in enumerate(names):
            assert vec[n] == pytest.approx(y[rows, j].mean())
        assert vec["other"] == pytest.approx(float((y[rows].sum(1) == 0).mean()))
    preds = cluster_predictions(project, clustering)
    assert preds[0].source == "manual" and preds[0].labels == [names[0]] and preds[0].support == 0
    for k, p in preds.items():
        if k != 0 and p.source == "algorithm1":
            assert p.support == r.counts[k]
            assert p.labels == sorted([n for n, v in r.vectors[k].items() if v >= 0.5], key=lambda n: -r.vectors[k][n])
    per_sample = sample_predictions(project, clustering)
    assert set(per_sample) == set(ids)
    project.close()


def test_umap_all_is_the_projection_the_app_reads(adrenal_copy):
    from core.project import Project
    from core.workflows.projections import store_umap

    path, info = adrenal_copy
    project = Project.open(path)
    line = store_umap(project, info["run"], "all")
    assert f"projections/run-{info['run']:04d}-umap " in line
    ids, xy = project.projection(info["run"], "umap")
    assert xy.shape == (len(project.embedding(info["run"])[0]), 2) and np.isfinite(xy).all()
    project.close()


def test_evaluation_uses_the_runs_own_clustering(adrenal_copy):
    from core.evaluation import evaluate_run
    from core.project import Project

    path, info = adrenal_copy
    project = Project.open(path)
    ids, assign = project.load_clustering(info["clustering"])
    # a clustering of another (unrecorded) embedding made active must not be used for this run
    project.save_clustering("other-run-k2", ids, np.asarray(assign) % 2)
    project.set_meta("active_clustering", "other-run-k2")
    ev = evaluate_run(project, info["run"], split="all")
    assert ev.tables["Clustering"].iloc[0]["clustering"] == info["clustering"]
    project.close()


def test_structure_from_a_ct_label_map(tmp_path):
    from core.project import Project
    from core.workflows.derive import import_and_derive

    project = Project.create(tmp_path / "ct")
    report = import_and_derive(project, [need(CT), need(CT_SEG)], structures=["liver", "2"])
    ct_id = report.import_report.ids[0]
    assert report.structure_ids == [f"{ct_id}/liver", f"{ct_id}/kidney_right"]
    assert report.sample_ids == report.structure_ids and not report.points_failed
    liver = project.sample(f"{ct_id}/liver")
    assert liver["kind"] == "structure" and liver["metadata"]["scan"] == ct_id
    assert liver["metadata"]["label_value"] == 5
    # the image view shows the scan: the structure sample reads the CT and its label map
    assert np.array_equal(project.load_sample_array(liver["id"]), project.load_sample_array(ct_id))
    # the mesh is the liver's alone: inside the liver's bounding box (physical units)
    seg = project.load_sample_array(ct_id, mask=True)
    from core.preprocess.shapes import _array_spacing

    sp = np.asarray(_array_spacing(liver["geometry"]))
    where = np.argwhere(seg == 5)
    lo, hi = (where.min(0) - 1) * sp, (where.max(0) + 1) * sp
    mesh = project.arrays.load_extra(f"meshes/{ct_id}/liver")
    assert (mesh["data"] >= lo - 1e-3).all() and (mesh["data"] <= hi + 1e-3).all()
    kid = project.arrays.load_extra(f"meshes/{ct_id}/kidney_right")["data"]
    assert np.ptp(kid, 0).prod() < np.ptp(mesh["data"], 0).prod()
    ids, pts = project.arrays.load("points")
    assert set(ids) == set(report.structure_ids) and pts.shape == (2, 1024, 3)
    # an unknown structure is named with what the map holds
    report = import_and_derive(project, [CT, CT_SEG], structures=["nosuch"])
    assert report.structure_errors and "spleen (1)" in report.structure_errors[0][1]
    # re-importing finds the existing scan and adds a structure to it
    report = import_and_derive(project, [CT, CT_SEG], structures=["spleen"])
    assert report.sample_ids == [f"{ct_id}/spleen"]
    # the scan's structures get the first map without training: the untrained PointNet over
    # the three organs (k-means capped at three clusters, not the default 10)
    from core.workflows.baseline import baseline_steps
    for _ in baseline_steps(project):
        pass
    runs = project.runs()
    assert list(runs["method"]) == ["baseline-pointnet"] and runs["status"].iloc[0] == "finished"
    ids, emb = project.embedding(int(runs["id"].iloc[0]))
    assert sorted(ids) == sorted(report.structure_ids + [f"{ct_id}/liver", f"{ct_id}/kidney_right"])
    assert np.isfinite(emb).all()
    # ...and a new structure is placed on that first map (from its checkpoint, no training)
    from core.workflows.place import place_samples
    new = import_and_derive(project, [CT, CT_SEG], structures=["kidney_left"]).sample_ids
    (placed,) = place_samples(project, new, k=3)
    assert placed.id == f"{ct_id}/kidney_left" and len(placed.neighbours) == 3
    assert {nb.id for nb in placed.neighbours} == set(ids)        # the three known organs
    d = [nb.distance for nb in placed.neighbours]
    assert d == sorted(d) and 0 < d[0]
    project.close()
