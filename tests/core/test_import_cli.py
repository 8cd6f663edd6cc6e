"""``latentmap import`` and ``latentmap info`` as a user runs them."""
from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest

from core.cli import import_cmd, info
from core.project import Project
from tests.conftest import DATA, need


def run_cli(argv) -> int:
    # Only our two sub-commands: the full `latentmap` parser imports every command module.
    parser = argparse.ArgumentParser(prog="latentmap")
    sub = parser.add_subparsers(dest="command", required=True)
    import_cmd.register(sub)
    info.register(sub)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture()
def small_cohort(tmp_path):
    """Real files: 6 VesselMNIST3D masks (one emptied), a DICOM, a NIfTI, a PLY mesh, junk."""
    import trimesh
    from skimage.measure import marching_cubes

    src = tmp_path / "cohort"
    src.mkdir()
    z = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    images = z["train_images"][:4].copy()
    images[2] = 0
    np.savez(src / "vesselmnist3d.npz", train_images=images, train_labels=z["train_labels"][:4],
             test_images=z["test_images"][:2], test_labels=z["test_labels"][:2])
    shutil.copy(need(DATA / "dicom_samples" / "US1_UNCR.dcm"), src / "us.dcm")
    shutil.copy(need(DATA / "nifti_samples" / "anatomical.nii"), src / "t1.nii")
    verts, faces, _, _ = marching_cubes(np.pad(z["train_images"][0] > 0, 1).astype(np.float32), 0.5)
    trimesh.Trimesh(verts, faces, process=False).export(src / "vessel.ply")
    (src / "noise.dcm").write_bytes(b"\x00" * 300)
    return src


def test_import_then_info(tmp_path, small_cohort, capsys):
    pytest.importorskip("core.preprocess.shapes")
    project_dir = tmp_path / "proj"
    assert run_cli(["import", small_cohort, "--project", project_dir]) == 0
    out = capsys.readouterr().out
    assert "imported 9 samples (image2d: 1, mask: 6, mesh: 1, volume: 1)" in out
    assert "skipped 1 file(s):" in out and "noise.dcm" in out
    # the emptied mask is named by the points step; the other shapes have 1024 points
    assert "points: 6 of 7 shapes sampled with 1024 points" in out
    assert "vesselmnist3d/train/00002" in out and "empty" in out
    with Project.open(project_dir) as project:
        ids, pts = project.arrays.load("points")
        assert pts.shape == (6, 1024, 3) and "vesselmnist3d/train/00002" not in set(ids)
        assert project.arrays.exists("meshes/vesselmnist3d/train/00000")

    assert run_cli(["import", small_cohort, "--project", project_dir, "--no-points"]) == 0
    out = capsys.readouterr().out
    assert "imported 0 samples" in out and "already in the project (left unchanged): 9" in out

    assert run_cli(["info", project_dir]) == 0
    out = capsys.readouterr().out
    assert "samples: 9" in out
    for line in ("train   4", "test    2", "mask     6", "aneurysm  6", "arrays: 7 (6 meshes)", "runs: 0"):
        assert line in out, line
    # the project as an option, as every other command takes it, reads the same
    assert run_cli(["info", "-p", project_dir]) == 0
    assert capsys.readouterr().out == out
    with pytest.raises(ValueError, match="two projects given"):
        run_cli(["info", project_dir, "--project", tmp_path / "other"])


def test_import_options(tmp_path):
    project_dir = tmp_path / "proj"
    assert run_cli(["import", need(DATA / "nifti_samples" / "anatomical.nii"), "--project", project_dir,
                    "--dataset", "brains", "--modality", "MR", "--no-points"]) == 0
    with Project.open(project_dir) as project:
        s = project.samples().iloc[0]
        assert s["dataset"] == "brains" and s["modality"] == "MR"
    assert not project.arrays.exists("points")
