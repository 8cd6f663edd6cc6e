"""Every DICOM and NIfTI sample, DICOM series, and TotalSegmentator volumes with label maps."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.io import import_source, reader_for
from core.io.dicom import read_dicom_file
from core.project import Project
from tests.conftest import DATA, need

DICOM = {  # file: (kind, shape, Modality)
    "CT_small.dcm": ("image2d", (128, 128), "CT"),
    "MR_small.dcm": ("image2d", (64, 64), "MR"),
    "MR2_UNCR.dcm": ("image2d", (1024, 1024), "MR"),
    "US1_UNCR.dcm": ("image2d", (480, 640, 3), "US"),
    "gdcm-US-ALOKA-16.dcm": ("image2d", (480, 640, 3), "US"),
    "emri_small.dcm": ("volume", (10, 64, 64), "MR"),
}


@pytest.mark.parametrize("name", sorted(DICOM))
def test_every_dicom_sample_reads(name):
    kind, shape, modality = DICOM[name]
    (s,) = read_dicom_file(need(DATA / "dicom_samples" / name))
    assert s.kind == kind and s.array.shape == shape and s.modality == modality
    for tag in ("Modality", "StudyInstanceUID", "SeriesInstanceUID"):
        assert tag in s.metadata
    assert s.metadata["Modality"] == modality
    assert np.ptp(s.array) > 0, "decoded to a constant image"


def test_dicom_tags_and_geometry_are_kept():
    (s,) = read_dicom_file(need(DATA / "dicom_samples" / "CT_small.dcm"))
    assert s.metadata["PatientID"] == "1CT1"
    assert s.geometry["spacing"] == pytest.approx([0.661468, 0.661468])
    assert len(s.geometry["origin"]) == 3  # a slice keeps its place in patient space
    # SimpleITK applied RescaleSlope/Intercept: Hounsfield units, air well below zero
    assert s.array.min() < -500


@pytest.mark.parametrize("name", sorted(DICOM))
def test_pydicom_fallback_when_simpleitk_fails(name, monkeypatch):
    import SimpleITK as sitk

    def refuse(*a, **k):
        raise RuntimeError("simulated GDCM failure")

    monkeypatch.setattr(sitk, "ReadImage", refuse)
    kind, shape, _ = DICOM[name]
    (s,) = read_dicom_file(need(DATA / "dicom_samples" / name))
    assert s.metadata["reader"] == "pydicom"
    assert s.kind == kind and s.array.shape == shape
    if name == "gdcm-US-ALOKA-16.dcm":  # palette colour expanded through its LUT
        assert s.metadata["color"] == "RGB"


@pytest.mark.parametrize("fallback", [False, True])
def test_ybr_ultrasound_becomes_rgb(tmp_path, monkeypatch, fallback):
    """The real colour-Doppler US re-encoded as YBR_FULL (as many scanners store it) reads back RGB."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.pixels import convert_color_space

    ds = pydicom.dcmread(need(DATA / "dicom_samples" / "US1_UNCR.dcm"))
    rgb = ds.pixel_array
    ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint8).tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.save_as(tmp_path / "us_ybr.dcm")
    if fallback:
        monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    (s,) = read_dicom_file(tmp_path / "us_ybr.dcm")
    assert s.metadata["reader"] == ("pydicom" if fallback else "SimpleITK")
    assert s.array.shape == (480, 640, 3) and s.metadata["color"] == "RGB"
    assert np.abs(s.array.astype(int) - rgb).mean() < 1.0


def test_dicom_folder_imports_with_tags(tmp_path):
    project = Project.create(tmp_path / "p")
    report = import_source(project, need(DATA / "dicom_samples"))
    assert report.imported == 6 and not report.skipped
    df = project.samples(dataset="dicom_samples")
    assert sorted(df["modality"]) == ["CT", "MR", "MR", "MR", "US", "US"]
    assert all(m.get("Modality") and m.get("Rows") for m in df["metadata"])
    assert not any(m.get("SeriesInstanceUID") for m in df["metadata"])   # de-identified by default


def test_dicom_series_folder_is_one_volume_with_geometry(tmp_path):
    """A real CT written slice by slice as a DICOM series reads back as one 3 mm volume."""
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(need(DATA / "totalseg_example" / "example_ct_sm.nii.gz")))
    ct = sitk.Cast(ct[:, :, :8], sitk.sitkInt16)
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.424242"
    direction = ct.GetDirection()
    for k in range(ct.GetDepth()):
        sl = ct[:, :, k]
        pos = ct.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "CT", "0010|0020": "SERIES-TEST", "0020|000d": "1.2.826.0.1.3680043.2.1125.1.1",
            "0020|000e": series_uid, "0020|0013": str(k + 1),
            "0008|0018": f"1.2.826.0.1.3680043.2.1125.1.2.{k + 1}",
            "0020|0032": "\\".join(map(str, pos)),
            "0020|0037": "\\".join(map(str, (direction[0], direction[3], direction[6],
                                             direction[1], direction[4], direction[7]))),
        }.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    project = Project.create(tmp_path / "p")
    report = import_source(project, folder, keep_identifiers=True)
    assert report.imported == 1 and not report.skipped
    s = project.samples().iloc[0]
    assert s["kind"] == "volume" and s["shape"] == [8, 101, 122] and s["modality"] == "CT"
    assert s["metadata"]["PatientID"] == "SERIES-TEST" and s["metadata"]["n_files"] == 8
    assert s["metadata"]["SeriesInstanceUID"] == series_uid and series_uid not in s["id"]
    assert s["geometry"]["spacing"] == pytest.approx([3.0, 3.0, 3.0], abs=1e-3)
    np.testing.assert_array_equal(project.load_sample_array(s["id"]), sitk.GetArrayFromImage(ct))


@pytest.mark.parametrize("name,shape,frames", [
    ("anatomical.nii", (25, 41, 33), 0),
    ("example4d.nii.gz", (24, 96, 128), 2),
    ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", (189, 233, 197), 0),
])
def test_every_nifti_sample_imports(tmp_path, name, shape, frames):
    project = Project.create(tmp_path / "p")
    report = import_source(project, need(DATA / "nifti_samples" / name))
    assert not report.skipped
    df = project.samples()
    assert len(df) == max(frames, 1) and set(df["kind"]) == {"volume"}
    assert all(list(s) == list(shape) for s in df["shape"])
    if frames:  # 4D: every frame is a volume sample, stored as one stack
        assert [m["frame"] for m in df["metadata"]] == list(range(frames))
        assert all(m["n_frames"] == frames for m in df["metadata"])
        assert df["data_file"].nunique() == 1 and list(df["data_index"]) == list(range(frames))
        a0, a1 = (project.load_sample_array(i) for i in df["id"])
        assert a0.shape == shape and not np.array_equal(a0, a1)
        assert df["geometry"].iloc[0]["spacing"] == pytest.approx([2.0, 2.0, 2.2], abs=1e-3)


@pytest.mark.parametrize("ext", ["nrrd", "mha", "mhd"])
def test_nrrd_and_metaimage_volumes(tmp_path, ext):
    import SimpleITK as sitk

    src = sitk.ReadImage(str(need(DATA / "nifti_samples" / "anatomical.nii")))
    path = tmp_path / f"t1.{ext}"
    sitk.WriteImage(src, str(path), True)
    project = Project.create(tmp_path / "p")
    report = import_source(project, path)
    assert report.imported == 1 and not report.skipped
    s = project.samples().iloc[0]
    assert s["kind"] == "volume" and s["shape"] == [25, 41, 33]
    assert s["geometry"]["spacing"] == pytest.approx(list(src.GetSpacing()))
    assert s["geometry"]["origin"] == pytest.approx(list(src.GetOrigin()))
    assert s["geometry"]["direction"] == pytest.approx(list(src.GetDirection()))
    assert s["geometry"]["array_spacing"] == pytest.approx(list(src.GetSpacing())[::-1])
    np.testing.assert_array_equal(project.load_sample_array(s["id"]), sitk.GetArrayFromImage(src))


@pytest.fixture(scope="module")
def totalseg(tmp_path_factory):
    project = Project.create(tmp_path_factory.mktemp("ts") / "p")
    report = import_source(project, need(DATA / "totalseg_example"))
    yield project, report
    project.close()


def test_totalseg_volumes_import_with_their_label_maps(totalseg):
    project, report = totalseg
    assert report.imported == 3 and report.label_maps == 2 and not report.skipped
    df = project.samples().set_index("source_path")
    ct = df.loc[str(DATA / "totalseg_example" / "example_ct_sm.nii.gz")]
    mr = df.loc[str(DATA / "totalseg_example" / "example_mr_sm.nii.gz")]
    full = df.loc[str(DATA / "totalseg_example" / "example_ct.nii.gz")]
    assert ct["modality"] == "CT" and mr["modality"] == "MR"
    assert ct["shape"] == [30, 101, 122] and mr["shape"] == [20, 91, 117]
    for row in (ct, mr, full):
        assert row["geometry"]["spacing"] == pytest.approx([3.0, 3.0, 3.0])
    assert pd.isna(full["mask_file"])
    ct_mask = project.load_sample_array(ct["id"], mask=True)
    assert ct_mask.shape == (30, 101, 122) and ct_mask.max() == 117
    assert ct["metadata"]["mask_source"].endswith("example_seg.nii.gz")
    assert mr["metadata"]["mask_source"].endswith("example_seg_mr.nii.gz")
    # names from labels.json, the right table for each modality, voxel counts as in PROVENANCE
    assert ct["metadata"]["mask_label_table"] == "total"
    assert mr["metadata"]["mask_label_table"] == "total_mr"
    assert ct["metadata"]["mask_label_voxels"]["liver"] == 38634
    assert ct["metadata"]["mask_label_voxels"]["lung_middle_lobe_right"] == 1
    assert mr["metadata"]["mask_label_voxels"]["vertebrae"] == 2006
    assert mr["metadata"]["mask_label_names"]["19"] == "vertebrae"
    names = json.loads((DATA / "totalseg_example" / "labels.json").read_text())["total"]
    assert len(ct["metadata"]["mask_label_voxels"]) == 41
    assert set(ct["metadata"]["mask_label_names"].values()) <= set(names.values())


def test_label_map_alone_is_a_mask_sample(tmp_path):
    project = Project.create(tmp_path / "p")
    import_source(project, need(DATA / "totalseg_example" / "example_seg.nii.gz"))
    s = project.samples().iloc[0]
    assert s["kind"] == "mask" and s["mask_file"] == s["data_file"]


def test_registry_picks_readers_by_pattern():
    names = {p: reader_for(p).name for p in (
        "a.nii.gz", "b.NII", "c.nrrd", "d.mha", "e.mhd", "f.dcm", "g.png", "h.JPG", "i.stl", "j.obj",
        "k.ply", "l.vtk", "m.vtp", "n.off", "o.npz", "p.csv", "q.parquet")}
    assert names["a.nii.gz"] == names["c.nrrd"] == names["e.mhd"] == "volume"
    assert names["f.dcm"] == "dicom" and names["h.JPG"] == "image2d"
    assert {names[k] for k in ("i.stl", "j.obj", "k.ply", "l.vtk", "m.vtp", "n.off")} == {"mesh"}
    assert names["o.npz"] == "medmnist" and names["q.parquet"] == names["p.csv"] == "manifest"
    assert reader_for("notes.xyz") is None
