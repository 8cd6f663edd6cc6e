"""Bad inputs give a clear error naming the file, and the rest of the import goes on."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from core.io import ReadError, import_source, import_steps
from core.io.importer import ImportReport
from core.io.meshes import read_mesh
from core.io.volumes import read_volume
from core.jobs.steps import run_to_end
from core.project import Project
from tests.conftest import DATA, need


@pytest.fixture()
def mixed_folder(tmp_path):
    """Good real files next to a truncated NIfTI, random bytes named .dcm and a face-less mesh."""
    src = tmp_path / "incoming"
    src.mkdir()
    shutil.copy(need(DATA / "dicom_samples" / "CT_small.dcm"), src / "good_ct.dcm")
    shutil.copy(need(DATA / "nifti_samples" / "anatomical.nii"), src / "good_t1.nii")
    raw = (DATA / "nifti_samples" / "anatomical.nii").read_bytes()
    (src / "truncated.nii").write_bytes(raw[: len(raw) // 2])
    gz = gzip.decompress((DATA / "totalseg_example" / "example_ct_sm.nii.gz").read_bytes())
    (src / "truncated_ct.nii.gz").write_bytes(gzip.compress(gz)[:20000])
    import SimpleITK as sitk

    for ext in ("mha", "nrrd"):
        sitk.WriteImage(sitk.ReadImage(str(DATA / "nifti_samples" / "anatomical.nii")),
                        str(tmp_path / f"t1.{ext}"))
        data = (tmp_path / f"t1.{ext}").read_bytes()
        (src / f"truncated_t1.{ext}").write_bytes(data[: len(data) // 2])
    (src / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    (src / "cloud.off").write_text("OFF\n4 0 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
    return src


def test_each_bad_file_is_reported_and_the_rest_imports(tmp_path, mixed_folder):
    project = Project.create(tmp_path / "p")
    report = import_source(project, mixed_folder)
    assert report.imported == 2
    assert sorted(project.samples()["source_path"]) == sorted(
        [str(mixed_folder / "good_ct.dcm"), str(mixed_folder / "good_t1.nii")])
    reasons = {p.split("/")[-1]: r for p, r in report.skipped}
    assert set(reasons) == {"truncated.nii", "truncated_ct.nii.gz", "truncated_t1.mha",
                            "truncated_t1.nrrd", "noise.dcm", "cloud.off"}
    assert "truncated or corrupt" in reasons["truncated_t1.mha"]
    assert "truncated or corrupt" in reasons["truncated.nii"]
    assert "truncated or corrupt" in reasons["truncated_ct.nii.gz"]
    assert "DICOM" in reasons["noise.dcm"]
    assert "no faces" in reasons["cloud.off"]
    text = "\n".join(report.summary_lines())
    assert "skipped 6 file(s)" in text and str(mixed_folder / "noise.dcm") in text


def test_read_errors_name_the_file(mixed_folder):
    with pytest.raises(ReadError, match=r"truncated\.nii: cannot read image"):
        read_volume(mixed_folder / "truncated.nii")
    with pytest.raises(ReadError, match=r"cloud\.off: mesh has no faces"):
        read_mesh(mixed_folder / "cloud.off")


def test_manifest_naming_a_missing_file(tmp_path):
    shutil.copy(need(DATA / "dicom_samples" / "MR_small.dcm"), tmp_path / "mr.dcm")
    (tmp_path / "cohort.csv").write_text("path,label\nmr.dcm,knee\ngone/missing.nii.gz,liver\n")
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "cohort.csv")
    assert report.imported == 1
    ((where, reason),) = report.skipped
    assert "missing.nii.gz" in where and "cohort.csv" in where and "row 2" in where
    assert "file not found" in reason
    assert project.labels()[project.sample_ids()[0]] == ["knee"]


def test_manifest_without_a_path_column(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    report = import_source(Project.create(tmp_path / "p"), tmp_path / "bad.csv")
    assert report.imported == 0
    assert "no path column" in report.skipped[0][1]


def test_missing_source_and_unsupported_file(tmp_path):
    (tmp_path / "notes.xyz").write_text("x")
    report = import_source(Project.create(tmp_path / "p"), [tmp_path / "nope", tmp_path / "notes.xyz"])
    assert report.skipped == [(str(tmp_path / "nope"), "not found"),
                              (str(tmp_path / "notes.xyz"), "unsupported file type")]


def test_progress_and_cancel_keep_what_was_read(tmp_path):
    project = Project.create(tmp_path / "p")
    report = ImportReport()
    steps = import_steps(project, need(DATA / "dicom_samples"), report=report)
    first = next(steps)
    assert first.steps_per_epoch == 6 and first.step == 1 and first.message.endswith(".dcm")
    next(steps)
    steps.close()  # the app's cancel: stop between files
    assert report.cancelled and report.imported == 2 and project.count() == 2


def test_empty_mask_fails_in_the_points_step(tmp_path):
    """An empty mask imports (it is a valid array) but the points step names it and says why."""
    shapes = pytest.importorskip("core.preprocess.shapes")
    z = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    images = z["train_images"][:3].copy()
    images[1] = 0
    np.savez(tmp_path / "vesselmnist3d.npz", train_images=images, train_labels=z["train_labels"][:3])
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "vesselmnist3d.npz")
    assert report.shape_ids(project) == [f"vesselmnist3d/train/0000{i}" for i in range(3)]
    failures = run_to_end(shapes.compute_points(project, ids=report.shape_ids(project), n_points=1024, seed=0))
    assert [f[0] for f in failures] == ["vesselmnist3d/train/00001"]
    assert "empty" in failures[0][1] and "vesselmnist3d/train/00001" in failures[0][1]
    ids, pts = project.arrays.load("points")
    assert list(ids) == ["vesselmnist3d/train/00000", "vesselmnist3d/train/00002"]
    assert pts.shape == (2, 1024, 3)
