"""2D frames, meshes (STL/OBJ/PLY/OFF/VTK/VTP) and manifests, made from real shared data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.io import import_source, reader_for
from core.io.manifest import read_manifest, split_labels
from core.io.medmnist import dataset_key, label_names_for
from core.project import Project
from tests.conftest import DATA, need


@pytest.fixture(scope="module")
def breast_images():
    z = np.load(need(DATA / "breastmnist" / "breastmnist.npz"))
    return z["train_images"][:4], z["train_labels"][:4]


@pytest.fixture(scope="module")
def adrenal_surface():
    """A real adrenal-gland surface (marching cubes of an AdrenalMNIST3D 64^3 mask)."""
    from skimage.measure import marching_cubes

    z = np.load(need(DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"))
    verts, faces, _, _ = marching_cubes(np.pad(z["train_images"][0] > 0, 1).astype(np.float32), 0.5)
    return verts.astype(np.float32), faces.astype(np.int64)


def test_png_and_jpeg_frames(tmp_path, breast_images):
    from PIL import Image

    images, _ = breast_images
    Image.fromarray(images[0]).save(tmp_path / "gray.png")
    Image.fromarray(images[1]).save(tmp_path / "gray.jpg", quality=95)
    rgb = np.stack([images[2], images[3], images[2]], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path, modality="US", dataset="frames")
    assert report.imported == 4 and not report.skipped
    df = project.samples().set_index("source_path")
    assert set(df["kind"]) == {"image2d"} and set(df["modality"]) == {"US"}
    np.testing.assert_array_equal(project.load_sample_array(df.loc[str(tmp_path / "gray.png"), "id"]),
                                  images[0])
    jpg = project.load_sample_array(df.loc[str(tmp_path / "gray.jpg"), "id"])
    assert jpg.shape == (28, 28) and np.abs(jpg.astype(int) - images[1]).mean() < 8
    assert project.load_sample_array(df.loc[str(tmp_path / "colour.png"), "id"]).shape == (28, 28, 3)
    assert project.load_sample_array(df.loc[str(tmp_path / "alpha.png"), "id"]).shape == (28, 28, 3)


@pytest.mark.parametrize("ext", ["stl", "obj", "ply", "off", "vtk", "vtp"])
def test_mesh_formats(tmp_path, adrenal_surface, ext):
    import trimesh

    verts, faces = adrenal_surface
    path = tmp_path / f"adrenal.{ext}"
    if ext in ("vtk", "vtp"):
        import pyvista as pv

        cells = np.hstack([np.full((len(faces), 1), 3), faces]).ravel()
        pv.PolyData(verts, cells).save(path)
    else:
        trimesh.Trimesh(verts, faces, process=False).export(path)
    project = Project.create(tmp_path / "p")
    report = import_source(project, path)
    assert report.imported == 1 and not report.skipped, report.skipped
    s = project.samples().iloc[0]
    assert s["kind"] == "mesh" and s["metadata"]["n_faces"] == len(faces)
    stored = project.arrays.load_extra(f"meshes/{s['id']}")
    assert stored["faces"].shape == (len(faces), 3) and stored["data"].shape[1] == 3
    area = trimesh.Trimesh(stored["data"], stored["faces"], process=False).area
    assert area == pytest.approx(trimesh.Trimesh(verts, faces, process=False).area, rel=1e-4)


def test_manifest_csv_and_parquet(tmp_path, breast_images):
    from PIL import Image

    images, labels = breast_images
    (tmp_path / "img").mkdir()
    rows = []
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "label": "malignant;irregular" if i == 0 else "benign",
                     "split": ["train", "validation", "test", "train"][i], "age": 40 + i})
    rows.append({"path": str(need(DATA / "totalseg_example" / "example_ct_sm.nii.gz")), "label": "ct",
                 "split": "test", "age": 61})
    df = pd.DataFrame(rows)
    df["mask"] = [""] * 4 + [str(DATA / "totalseg_example" / "example_seg.nii.gz")]
    df.to_csv(tmp_path / "cohort.csv", index=False)
    parsed = read_manifest(tmp_path / "cohort.csv")
    assert parsed[0].path == tmp_path / "img" / "0.png" and parsed[0].labels == ["malignant", "irregular"]
    assert parsed[1].split == "val" and parsed[4].mask is not None

    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "cohort.csv")
    assert report.imported == 5 and not report.skipped and report.label_maps == 1
    s = project.samples().set_index("source_path")
    first = s.loc[str(tmp_path / "img" / "0.png")]
    assert first["dataset"] == "cohort" and first["split"] == "train"
    assert first["metadata"]["age"] == "40" and first["metadata"]["manifest_row"] == 1
    assert sorted(project.labels([first["id"]])[first["id"]]) == ["irregular", "malignant"]
    ct = s.loc[str(DATA / "totalseg_example" / "example_ct_sm.nii.gz")]
    assert project.load_sample_array(ct["id"], mask=True).max() == 117

    df.rename(columns={"path": "filename", "label": "labels"}).to_parquet(tmp_path / "again.parquet")
    p2 = Project.create(tmp_path / "p2")
    r2 = import_source(p2, tmp_path / "again.parquet")
    assert r2.imported == 5 and not r2.skipped
    assert set(p2.samples()["id"]) == set(project.samples()["id"])  # ids depend on the file only


def test_manifest_small_helpers():
    assert split_labels("a | b;c") == ["a", "b", "c"] and split_labels("") == []
    assert dataset_key("adrenalmnist3d_64.npz") == "adrenalmnist3d"
    assert label_names_for("unknownmnist", 3) == ["class_0", "class_1", "class_2"]
    assert label_names_for("breastmnist", 2) == ["malignant", "normal_or_benign"]
    assert reader_for("cohort.tsv").name == "manifest"


def test_unknown_medmnist_gets_class_names(tmp_path):
    z = np.load(need(DATA / "breastmnist" / "breastmnist.npz"))
    np.savez(tmp_path / "mybreast.npz", train_images=z["train_images"][:10],
             train_labels=z["train_labels"][:10], test_images=z["test_images"][:5],
             test_labels=z["test_labels"][:5])
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "mybreast.npz")
    assert report.imported == 15
    assert set(project.label_names()) <= {"class_0", "class_1"}
    assert project.sample_ids(split="test")[0] == "mybreast/test/00000"


def test_manifest_naming_medmnist_files(tmp_path):
    z = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    np.savez(tmp_path / "vessels_a.npz", train_images=z["train_images"][:3], train_labels=z["train_labels"][:3])
    np.savez(tmp_path / "vessels_b.npz", test_images=z["test_images"][:2], test_labels=z["test_labels"][:2])
    (tmp_path / "sets.csv").write_text("path,label,site\nvessels_a.npz,site-a,1\nvessels_b.npz,site-b,2\n")
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "sets.csv")
    assert report.imported == 5 and not report.skipped
    df = project.samples()
    assert sorted(df["id"]) == ["vessels_a/train/00000", "vessels_a/train/00001", "vessels_a/train/00002",
                                "vessels_b/test/00000", "vessels_b/test/00001"]
    assert set(df["dataset"]) == {"sets"} and set(df["kind"]) == {"mask"}
    labels = project.labels(df["id"].tolist())
    assert labels["vessels_b/test/00001"] == ["class_1", "site-b"]  # not a known MedMNIST name
    assert df.set_index("id").loc["vessels_a/train/00000", "metadata"]["site"] == "1"
