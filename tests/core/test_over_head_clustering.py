"""PICA's over-clustering head as a clustering of its own (``latentmap cluster --over-head``,
``core.workflows.clustering.overclustering_steps``): a new undoable clustering holding the
head's argmax for every embedded sample, placing new samples with that head, and refused with
a clear message for a run whose method has no such head. Real OrganAMNIST images."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.cli import main
from core.project import Project, SampleRecord
from tests.conftest import DATA, need
from tests.core.tiny_project import PICA_TINY, organ_project


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks: see ``one_torch_thread``."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny OrganAMNIST project (24 training images of 3 organs) with one PICA run
    (over-clustering head of 6, target head of 3), trained and applied through the CLI."""
    path = tmp_path_factory.mktemp("over-head") / "organ"
    organ_project(path, n_train=24, n_val=6).close()
    assert main(["train", "pica", "--project", str(path), "--set", "epochs=2", *PICA_TINY]) == 0
    return path


@pytest.fixture
def project(trained, tmp_path):
    dst = tmp_path / "organ"
    shutil.copytree(trained, dst)
    p = Project.open(dst)
    yield p
    p.close()


def _pica(project):
    from core.workflows.runs import load_method_data, load_run_method

    method = load_run_method(project.run(1), project)
    return method, load_method_data(project, method)


def test_cli_over_head_is_a_new_undoable_clustering_of_the_heads_argmax(project, capsys):
    head = project.active_clustering_name
    assert project.clustering_info(head)["params"]["source"] == "head"
    assert main(["cluster", "--project", str(project.path), "--over-head"]) == 0
    out = capsys.readouterr().out
    name = "run-0001-head-over"
    assert f"clustering {name}:" in out
    info = project.clustering_info(name)
    assert info["params"]["source"] == "head-over" and info["params"]["head_clusters"] == 6
    assert project.active_clustering_name == name

    method, data = _pica(project)
    ids, assign = project.load_clustering(name)
    emb_ids, _ = project.embedding(1)
    assert sorted(ids) == sorted(map(str, emb_ids))
    want = dict(zip(map(str, data.ids), method.predict_overclusters(data)))
    assert [want[s] for s in ids] == assign.tolist()
    # finer than the target head's: the over-clustering head may use up to 6 clusters
    assert 1 <= len(set(assign.tolist())) <= 6
    # the K-cluster clustering is untouched; undo removes the new one and re-activates it
    h_ids, h_assign = project.load_clustering(head)
    assert h_assign.tolist() == [dict(zip(map(str, data.ids), method.predict_clusters(data)))[s] for s in h_ids]
    project.undo()
    assert not project.has_clustering(name) and project.active_clustering_name == head


def _add_test_images(project, n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n`` OrganAMNIST test images as new (unembedded) samples."""
    d = np.load(need(DATA / "organamnist" / "organamnist.npz"))
    img = d["test_images"][:n]
    ids = [f"organamnist/test/{i:05d}" for i in range(n)]
    project.save_sample_array("new.npy", img)
    project.add_samples([SampleRecord(id=s, dataset="organamnist", kind="image2d", split="test",
                                      shape=(28, 28), data_file="new.npy", data_index=i) for i, s in enumerate(ids)])
    return ids, img


def test_new_sample_is_placed_by_the_over_clustering_head(project):
    from core.workflows.clustering import cluster_from_overclustering_head
    from core.workflows.place import Placer

    name = cluster_from_overclustering_head(project, 1)
    _, img = _add_test_images(project, 1)
    placed = Placer(project, 1, clustering=name).place(["organamnist/test/00000"], k=3)
    method, _ = _pica(project)
    assert placed[0].embedded_now
    assert placed[0].cluster == int(method.predict_overclusters(img)[0])
    assert project.cluster_assignments(name, ["organamnist/test/00000"]) == {"organamnist/test/00000": placed[0].cluster}


def test_embed_again_places_new_samples_with_the_over_clustering_head(project):
    """``latentmap embed`` on an active head-over clustering: old assignments kept, new samples
    get the over-clustering head's argmax (not the nearest centroid)."""
    from core.workflows.clustering import cluster_from_overclustering_head

    name = cluster_from_overclustering_head(project, 1)
    before = project.cluster_assignments(name)
    ids, img = _add_test_images(project, 5)
    assert main(["embed", "--project", str(project.path), "--run", "1"]) == 0
    after = project.cluster_assignments(name)
    assert {s: after[s] for s in before} == before
    method, _ = _pica(project)
    assert [after[s] for s in ids] == method.predict_overclusters(img).tolist()


def test_a_run_without_an_over_clustering_head_is_refused(project, capsys):
    """The project's first map (a baseline without heads) has none: a clear error, nothing saved."""
    from core.jobs.steps import run_to_end
    from core.workflows.baseline import baseline_steps

    before = project.clustering_names()
    run_to_end(baseline_steps(project))
    base = int(project.runs()["id"].max())
    assert base != 1 and project.has_embedding(base)
    n = len(project.clustering_names())
    rc = main(["cluster", "--project", str(project.path), "--run", str(base), "--over-head"])
    err = capsys.readouterr().err
    assert rc != 0 and "has no over-clustering head" in err
    assert len(project.clustering_names()) == n >= len(before)
    rc = main(["cluster", "--project", str(project.path), "--over-head", "--k", "4"])
    assert rc != 0 and "not with --k" in capsys.readouterr().err


def test_cli_merge_joins_the_over_clusters_into_k(project, capsys):
    """``latentmap cluster --merge K`` on the over-clustering head's clustering: its clusters
    joined by average linkage of their probability-weighted centroids in the stored embedding
    (the head's argmax is often a near tie), as a new undoable clustering that keeps each
    over-cluster's group."""
    from core.cluster.merge import merge_soft_overclusters
    from core.workflows.clustering import cluster_from_overclustering_head

    over = cluster_from_overclustering_head(project, 1)
    o_ids, o_assign = project.load_clustering(over)
    n_used = len(set(o_assign.tolist()))
    assert n_used >= 3, "the tiny run's over-clustering head uses too few clusters to merge"
    assert main(["cluster", "--project", str(project.path), "--merge", "2"]) == 0
    name = f"{over}-merged2"
    assert f"clustering {name}:" in capsys.readouterr().out
    info = project.clustering_info(name)
    assert info["params"]["source"] == "merged" and info["params"]["from"] == over
    assert info["params"]["soft"] is True
    ids, assign = project.load_clustering(name)
    assert sorted(ids) == sorted(o_ids) and set(assign.tolist()) == {0, 1}
    emb_ids, emb = project.embedding(1)
    row = {str(s): i for i, s in enumerate(emb_ids)}
    method, data = _pica(project)
    proba = method.predict_overcluster_proba(data)
    want, groups = merge_soft_overclusters(emb[[row[str(s)] for s in data.ids]], proba, 2)
    assert info["params"]["groups"] == groups.tolist()
    got = project.cluster_assignments(name)
    assert [got[str(s)] for s in data.ids] == want.tolist()
    assert project.active_clustering_name == name
    project.undo()
    assert not project.has_clustering(name) and project.active_clustering_name == over
    rc = main(["cluster", "--project", str(project.path), "--merge", str(n_used)])
    assert rc != 0 and f"merging needs 1 <= k < {n_used}" in capsys.readouterr().err


def test_cli_merge_of_a_kmeans_clustering_joins_its_centroids(project, capsys):
    """A clustering not from a head (k-means) is merged by its argmax centroids."""
    from core.cluster.merge import merge_overclusters
    from core.workflows.clustering import recluster

    fine = recluster(project, 1, k=6)
    f_ids, f_assign = project.load_clustering(fine)
    assert main(["cluster", "--project", str(project.path), "--merge", "3", "--clustering", fine]) == 0
    info = project.clustering_info(f"{fine}-merged3")
    assert "groups" not in info["params"]
    ids, assign = project.load_clustering(f"{fine}-merged3")
    emb_ids, emb = project.embedding(1)
    row = {str(s): i for i, s in enumerate(emb_ids)}
    assert ids == f_ids
    assert assign.tolist() == merge_overclusters(emb[[row[s] for s in f_ids]], f_assign, 3).tolist()


def test_new_samples_join_a_soft_merge_by_the_head_probabilities(project):
    """A new sample goes into the merged clustering of the over-clustering head by that
    head's probabilities summed per merged cluster, both through ``Placer`` and ``embed``."""
    from core.cluster.merge import merged_from_proba
    from core.workflows.clustering import cluster_from_overclustering_head, merge_clustering
    from core.workflows.place import Placer

    over = cluster_from_overclustering_head(project, 1)
    name = merge_clustering(project, over, k=2)
    groups = project.clustering_info(name)["params"]["groups"]
    ids, img = _add_test_images(project, 4)
    method, _ = _pica(project)
    want = merged_from_proba(method.predict_overcluster_proba(img), groups).tolist()
    placed = Placer(project, 1, clustering=name).place(ids[:1], k=3)
    assert placed[0].embedded_now and placed[0].cluster == want[0]
    assert main(["embed", "--project", str(project.path), "--run", "1"]) == 0
    after = project.cluster_assignments(name, ids)
    assert [after[s] for s in ids] == want
