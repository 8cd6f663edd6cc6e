"""``latentmap query`` as a surgeon runs it: a new NIfTI mask, and a CT with its TotalSegmentator
label map and ``--structure liver``, against a trained DeepDiffusion project on real data."""
from __future__ import annotations

import json

import pytest

from tests.conftest import need
from tests.core.workflow_project import CT, CT_SEG, adrenal_copy, table_dump, trained_adrenal  # noqa: F401

pytestmark = pytest.mark.slow


def _query(argv, capsys):
    from core.cli import main

    capsys.readouterr()
    rc = main(["query", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _check(cases, project, k):
    known = set(project.embedding(project.active_run_id)[0])
    for case in cases:
        assert set(case) >= {"id", "predicted", "neighbours"}
        assert {"label", "support"} <= set(case["predicted"])
        d = [n["distance"] for n in case["neighbours"]]
        assert len(d) == k and d == sorted(d) and all(0 <= x <= 2 for x in d)
        labels = project.labels([n["id"] for n in case["neighbours"]])
        for n in case["neighbours"]:
            assert n["id"] in known and n["id"] != case["id"]
            assert n["label"] == ", ".join(labels[n["id"]])


def test_query_json_on_a_new_nifti_mask(adrenal_copy, capsys):
    from core.project import Project

    path, info = adrenal_copy
    with Project.open(path) as p:
        mapping = table_dump(p, "cluster_labels")
    rc, out, err = _query([info["masks"][150], "--project", path, "--k", "4", "--json"], capsys)
    assert rc == 0, err
    cases = json.loads(out)
    assert len(cases) == 1
    with Project.open(path) as p:
        _check(cases, p, 4)
        assert table_dump(p, "cluster_labels") == mapping
        pred = cases[0]["predicted"]
        if pred["source"] == "algorithm1":
            assert pred["support"] >= 1 and pred["label"]
    # text output: the same case again (already imported), distances to 4 significant digits
    rc, out, err = _query([info["masks"][150], "--project", path, "--k", "4"], capsys)
    assert rc == 0, err
    assert cases[0]["id"] in out and "predicted:" in out and "nearest known cases" in out
    first = cases[0]["neighbours"][0]
    assert f"{first['distance']:.4g}" in out


def test_query_ct_with_structure_liver(adrenal_copy, capsys):
    from core.project import Project

    path, _ = adrenal_copy
    rc, out, err = _query([need(CT), need(CT_SEG), "--structure", "liver", "--project", path, "--k", "3",
                           "--json"], capsys)
    assert rc == 0, err
    (case,) = json.loads(out)
    assert case["id"].endswith("/liver")
    with Project.open(path) as p:
        _check([case], p, 3)
        s = p.sample(case["id"])
        assert s["kind"] == "structure" and s["metadata"]["structure"] == "liver"
        assert p.arrays.exists(f"meshes/{case['id']}")


def test_query_errors_are_clear(adrenal_copy, capsys, tmp_path):
    path, info = adrenal_copy
    rc, out, err = _query([need(CT), need(CT_SEG), "--structure", "nosuch", "--project", path], capsys)
    assert rc == 2 and "no structure 'nosuch'" in err and "liver (5)" in err
    from core.project import Project

    empty = tmp_path / "empty"
    Project.create(empty).close()
    rc, out, err = _query([info["masks"][151], "--project", empty], capsys)
    assert rc == 2 and "no stored embedding" in err


def test_query_on_a_new_project_with_only_its_first_map(tmp_path, capsys):
    """A CLI user's first minutes: import a CT's organs with --first-map (no training), then
    query the MR's liver against them."""
    from core.cli import main
    from core.project import Project

    ts = CT.parent
    proj = tmp_path / "organs"
    organs = ["liver", "spleen", "kidney_left", "kidney_right"]
    rc = main(["import", str(need(CT)), str(need(CT_SEG)), "--project", str(proj), "--first-map",
               *sum((["--structure", s] for s in organs), [])])
    assert rc == 0 and "first map: run 1 (baseline-pointnet)" in capsys.readouterr().out
    rc, out, err = _query([need(ts / "example_mr_sm.nii.gz"), need(ts / "example_seg_mr.nii.gz"),
                           "--structure", "liver", "--k", "4", "--json", "--project", proj], capsys)
    assert rc == 0, err
    (case,) = json.loads(out)
    assert case["id"].endswith("/liver") and len(case["neighbours"]) == 4
    project = Project.open(proj)
    _check([case], project, 4)
    assert project.runs()["method"].tolist() == ["baseline-pointnet"]   # placed, not retrained
    project.close()
