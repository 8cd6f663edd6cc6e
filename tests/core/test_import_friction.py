"""Import friction (issue 14 item 10): a manifest's dataset is named after its folder; ``train
--list-params`` needs no project; ``evaluate`` on a project without splits points to
``--split all``; an import that brings nothing in leaves no project folder behind."""
from __future__ import annotations

import numpy as np

from core.cli import main
from tests.conftest import DATA, need


def test_manifest_dataset_is_its_folder(tmp_path):
    from core.project import Project

    nii = need(DATA / "nifti_samples" / "anatomical.nii")
    study = tmp_path / "knee-study"
    study.mkdir()
    (study / "manifest.csv").write_text(f"path,label\n{nii},brain\n")
    proj = tmp_path / "proj"
    assert main(["import", str(study / "manifest.csv"), "--project", str(proj), "--no-points"]) == 0
    p = Project.open(proj)
    try:
        assert list(p.samples()["dataset"]) == ["knee-study"]
    finally:
        p.close()


def test_list_params_without_project(capsys):
    assert main(["train", "deepdiffusion", "--list-params"]) == 0
    out = capsys.readouterr().out
    assert "lr" in out
    # training itself still asks for the project, with a clear line
    assert main(["train", "deepdiffusion"]) == 2
    assert "--project" in capsys.readouterr().err


def test_evaluate_without_splits_suggests_split_all(tmp_path, capsys):
    from core.project import Project, SampleRecord

    npz = np.load(need(DATA / "breastmnist" / "breastmnist.npz"))
    imgs = np.asarray(npz["train_images"][:6])
    p = Project.create(tmp_path / "p")
    rel = p.save_sample_array("data/imgs.npy", imgs)
    p.add_samples([SampleRecord(id=f"s{i}", dataset="breastmnist", modality="US", kind="image2d",
                                split="", shape=imgs.shape[1:], data_file=rel, data_index=i)
                   for i in range(len(imgs))])
    p.close()
    assert main(["evaluate", "--project", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "no 'test' split" in err and "--split all" in err


def test_failed_import_leaves_no_project_folder(tmp_path, capsys):
    proj = tmp_path / "new-project"
    rc = main(["import", str(tmp_path / "does-not-exist"), "--project", str(proj)])
    assert rc == 1
    assert not proj.exists()
    assert "not found" in capsys.readouterr().out
    # an existing project folder is never removed, even when nothing came in
    proj.mkdir()
    main(["import", str(tmp_path / "does-not-exist"), "--project", str(proj)])
    assert proj.exists()
