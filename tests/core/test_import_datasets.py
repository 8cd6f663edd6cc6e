"""Import every dataset of ../shared/data; counts and label counts equal their PROVENANCE.md."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from core.io import import_source
from core.jobs.steps import run_to_end
from core.project import Project
from tests.conftest import DATA, need

MEDMNIST = [
    ("organamnist", "organamnist.npz", "image2d", "CT"),
    ("breastmnist", "breastmnist.npz", "image2d", "US"),
    ("adrenalmnist3d", "adrenalmnist3d.npz", "mask", "CT"),
    ("adrenalmnist3d", "adrenalmnist3d_64.npz", "mask", "CT"),
    ("vesselmnist3d", "vesselmnist3d.npz", "mask", "MR"),
]


def provenance_counts(folder: str) -> dict[str, dict[str, int]]:
    """{class name: {train, val, test, total}} from the 'Classes and counts' table."""
    text = need(DATA / folder / "PROVENANCE.md").read_text()
    section = text[text.index("## Classes and counts"):]
    out = {}
    for m in re.finditer(r"^\|\s*(\d+)\s+([^|]+?)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                         section, re.M):
        out[m.group(2)] = dict(zip(("train", "val", "test", "total"), map(int, m.group(3, 4, 5, 6))))
    assert out, f"no class table parsed from {folder}/PROVENANCE.md"
    return out


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory):
    """All of ../shared/data imported in one call (OrganAMNIST included: 58,830 images)."""
    need(DATA)
    project = Project.create(tmp_path_factory.mktemp("shared") / "p")
    report = import_source(project, DATA)
    yield project, report
    project.close()


@pytest.mark.parametrize("folder,name,kind,modality", MEDMNIST)
def test_medmnist_counts_and_labels_match_provenance(shared_project, folder, name, kind, modality):
    project, report = shared_project
    dataset = name[: -len(".npz")]
    expected = provenance_counts(folder)
    total = sum(c["total"] for c in expected.values())
    assert report.by_dataset[dataset] == total
    df = project.samples(dataset=dataset)
    assert len(df) == total
    assert set(df["kind"]) == {kind} and set(df["modality"]) == {modality}
    labels = project.labels(df["id"].tolist())
    for split in ("train", "val", "test"):
        ids = df.loc[df["split"] == split, "id"]
        counts = Counter(n for i in ids for n in labels[i])
        assert counts == {c: v[split] for c, v in expected.items()}, (name, split)
    # every sample has exactly one class label
    assert all(len(v) == 1 for v in labels.values())


def test_medmnist_is_stored_as_one_stack_per_split(shared_project):
    project, _ = shared_project
    df = project.samples(dataset="organamnist")
    assert len(df) == 58830
    assert sorted(df["data_file"].unique()) == [
        "data/organamnist/test_images.npy", "data/organamnist/train_images.npy",
        "data/organamnist/val_images.npy"]
    row = df.set_index("id").loc["organamnist/train/00042"]
    assert row["split"] == "train" and row["data_index"] == 42
    raw = np.load(DATA / "organamnist" / "organamnist.npz")
    np.testing.assert_array_equal(project.load_sample_array("organamnist/train/00042"),
                                  raw["train_images"][42])
    label = int(raw["train_labels"][42, 0])
    names = list(provenance_counts("organamnist"))
    assert project.labels(["organamnist/train/00042"])["organamnist/train/00042"] == [names[label]]
    stack = project.load_stack(["organamnist/test/00000", "organamnist/val/00003"])
    np.testing.assert_array_equal(stack[1], raw["val_images"][3])


def test_3d_masks_are_masks_with_their_own_mask_file(shared_project):
    project, _ = shared_project
    sid = "adrenalmnist3d_64/val/00007"
    s = project.sample(sid)
    assert s["kind"] == "mask" and s["shape"] == [64, 64, 64]
    np.testing.assert_array_equal(project.load_sample_array(sid), project.load_sample_array(sid, mask=True))


def test_reimport_gives_the_same_ids_and_keeps_user_labels(shared_project):
    project, _ = shared_project
    sid = "breastmnist/test/00001"
    project.set_label([sid], "reviewed", author="tester")
    before = project.count()
    report = import_source(project, DATA / "breastmnist" / "breastmnist.npz")
    assert report.imported == 0 and report.already == 780
    assert project.count() == before
    assert "reviewed" in project.labels([sid])[sid]
    project.undo()


def test_import_all_shared_data_in_one_call(shared_project):
    """The whole ../shared/data folder: every file imports or is ignored as a non-data file."""
    project, report = shared_project
    assert report.skipped == []
    expected = {"organamnist": 58830, "breastmnist": 780, "adrenalmnist3d": 1584,
                "adrenalmnist3d_64": 1584, "vesselmnist3d": 1908, "dicom_samples": 6,
                "nifti_samples": 4, "totalseg_example": 3, "modelnet10": 4899}
    assert dict(report.by_dataset) == expected
    assert report.label_maps == 2
    assert all(p.endswith((".md", ".json")) for p in report.ignored)
    summary = project.summary()
    assert summary["n_samples"] >= sum(expected.values())
    assert summary["by_label"]["liver"] == 10482
    assert summary["by_label"]["chair"] == 989          # ModelNet10, train + test
    # the 8 empty ModelNet10 grids import, and are reported per sample
    assert sorted(report.empty_masks) == sorted(MODELNET_EMPTY)
    lines = report.summary_lines()
    assert "    modelnet10/train/00006: empty mask, no surface to sample" in lines


MODELNET_EMPTY = [f"modelnet10/train/{i:05d}" for i in (6, 15, 21, 24, 60, 3392, 3857)] + [
    "modelnet10/test/00304"]


def modelnet_counts() -> dict[str, dict[str, int]]:
    """{class: {train, test, total}} from modelnet10/PROVENANCE.md (no val split)."""
    text = need(DATA / "modelnet10" / "PROVENANCE.md").read_text()
    section = text[text.index("## Classes and counts"):]
    out = {m.group(2): dict(zip(("train", "test", "total"), map(int, m.group(3, 4, 5))))
           for m in re.finditer(r"^\|\s*(\d+)\s+([^|]+?)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                                section, re.M)}
    assert len(out) == 10, "no ModelNet10 class table parsed from PROVENANCE.md"
    return out


def test_modelnet10_imports_as_binary_masks_with_class_names(shared_project):
    """X_train/y_train/X_test/y_test layout: 3,991 + 908 masks, the PROVENANCE class names."""
    project, report = shared_project
    expected = modelnet_counts()
    df = project.samples(dataset="modelnet10")
    assert len(df) == 4899 and report.by_dataset["modelnet10"] == 4899
    assert set(df["kind"]) == {"mask"} and set(df["split"]) == {"train", "test"}
    labels = project.labels(df["id"].tolist())
    for split in ("train", "test"):
        ids = df.loc[df["split"] == split, "id"]
        assert Counter(n for i in ids for n in labels[i]) == {c: v[split] for c, v in expected.items()}
    raw = np.load(DATA / "modelnet10" / "modelnet10.npz")
    sid = "modelnet10/test/00123"
    assert labels[sid] == [list(expected)[int(raw["y_test"][123])]]
    arr = project.load_sample_array(sid)
    assert arr.dtype == np.uint8             # int32 0/1 stored as uint8: same values, 1/4 the disk
    np.testing.assert_array_equal(arr, raw["X_test"][123])
    meta = df.set_index("id").loc["modelnet10/train/00006", "metadata"]
    assert meta.get("empty_mask") is True


def test_empty_modelnet_grid_is_a_per_sample_points_failure(shared_project):
    """compute_points on two shapes and one empty grid: two point clouds, one clear reason."""
    from core.preprocess.shapes import compute_points

    project, _ = shared_project
    ids = ["modelnet10/train/00005", "modelnet10/train/00006", "modelnet10/test/00000"]
    messages = []
    failures = run_to_end(compute_points(project, ids=ids, n_points=64, seed=0, save_meshes=False),
                          lambda p: messages.append(p.message))
    assert [f[0] for f in failures] == ["modelnet10/train/00006"]
    assert "empty" in failures[0][1] and "no foreground voxel" in failures[0][1]
    assert any(m.startswith("modelnet10/train/00006 skipped: ") for m in messages)
    pid, pts = project.arrays.load("points")
    assert sorted(map(str, pid)) == ["modelnet10/test/00000", "modelnet10/train/00005"]
    assert pts.shape == (2, 64, 3)


def test_npz_class_names_array_names_a_custom_set(tmp_path):
    """A custom X/y .npz with a class_names array gets those names, not class_0...; an object
    array (pickle) or too few names is a clear error naming the file."""
    raw = np.load(need(DATA / "modelnet10" / "modelnet10.npz"))
    rows = [0, 200, 1000, 3000]
    names = np.array(["tub", "bed", "chair", "desk", "dresser", "monitor", "nightstand", "sofa",
                      "table", "toilet"])
    np.savez(tmp_path / "myshapes.npz", X_train=raw["X_train"][rows], y_train=raw["y_train"][rows],
             class_names=names)
    project = Project.create(tmp_path / "p")
    report = import_source(project, tmp_path / "myshapes.npz")
    assert report.imported == 4 and not report.skipped
    got = project.labels([f"myshapes/train/{i:05d}" for i in range(4)])
    assert [v[0] for v in got.values()] == [str(names[int(raw["y_train"][r])]) for r in rows]
    assert not any(n.startswith("class_") for n in project.label_names())

    np.savez(tmp_path / "few.npz", X_train=raw["X_train"][rows], y_train=raw["y_train"][rows],
             label_names=names[:2])
    np.savez(tmp_path / "pickled.npz", X_train=raw["X_train"][rows], y_train=raw["y_train"][rows],
             class_names=np.array(list(names), dtype=object))
    report = import_source(project, [tmp_path / "few.npz", tmp_path / "pickled.npz"])
    reasons = dict(report.skipped)
    assert report.imported == 0 and len(reasons) == 2
    assert "2 class names for labels up to" in reasons[str(tmp_path / "few.npz")]
    assert "without pickle" in reasons[str(tmp_path / "pickled.npz")]
