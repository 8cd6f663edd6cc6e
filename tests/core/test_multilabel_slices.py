"""Multi-label data path: TotalSegmentator example CT slices tagged with the organs they show."""
import json

import numpy as np
import pytest

from tests.conftest import DATA, need

from core.data_multilabel import ORGANS, add_to_project, slice_organ_tags, totalseg_slices

ROOT = DATA / "totalseg_example"


def test_slice_organ_tags_hand_case():
    names = {"1": "spleen", "2": "kidney_right", "3": "kidney_left", "4": "gallbladder", "5": "liver",
             "7": "pancreas", "21": "urinary_bladder", "52": "aorta"}
    seg = np.zeros((3, 4, 4), dtype=np.uint8)
    seg[0, 0, 0] = 5            # liver
    seg[0, 1, 1:3] = 3          # left kidney -> kidney
    seg[1, 2, 2] = 52           # only aorta -> other
    seg[2, 0, 0] = 2            # right kidney, one pixel
    seg[2, 3, :] = 21           # bladder, four pixels
    tags = slice_organ_tags(seg, names)
    want = np.zeros((3, len(ORGANS)))
    want[0, [ORGANS.index("liver"), ORGANS.index("kidney")]] = 1
    want[1, ORGANS.index("other")] = 1
    want[2, [ORGANS.index("kidney"), ORGANS.index("urinary_bladder")]] = 1
    np.testing.assert_array_equal(tags, want)
    # min_pixels: the one-pixel kidney no longer counts
    tags2 = slice_organ_tags(seg, names, min_pixels=2)
    assert tags2[2, ORGANS.index("kidney")] == 0 and tags2[2, ORGANS.index("urinary_bladder")] == 1


def test_totalseg_slices_tags_match_label_map():
    need(ROOT)
    import SimpleITK as sitk

    data = totalseg_slices(ROOT, size=(32, 32))
    assert data.x.shape == (112, 32, 32) and data.x.dtype == np.float32
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert data.label_names == list(ORGANS)
    assert data.labelled.sum() == 30 and (data.split == "val").sum() == 6
    assert not data.y[~data.labelled].any()  # slices outside the label map stay unlabelled
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(ROOT / "example_seg.nii.gz")))
    names = {v: int(k) for k, v in json.loads((ROOT / "labels.json").read_text())["total"].items()}
    lab = data.y[data.labelled]
    assert [i[-3:] for i in data.ids[data.labelled]] == [f"{z:03d}" for z in range(82, 112)]
    for k in range(30):
        present = set(np.unique(seg[k]).tolist())
        assert lab[k, ORGANS.index("liver")] == (names["liver"] in present)
        assert lab[k, ORGANS.index("kidney")] == bool({names["kidney_left"], names["kidney_right"]} & present)
        assert lab[k, ORGANS.index("pancreas")] == (names["pancreas"] in present)
    # this subject's labelled block: liver and spleen throughout, no bladder, never "other"
    assert lab[:, ORGANS.index("liver")].all() and lab[:, ORGANS.index("spleen")].all()
    assert lab[:, ORGANS.index("urinary_bladder")].sum() == 0
    assert lab.sum(0)[ORGANS.index("gallbladder")] == 13


def test_totalseg_slices_into_project(tmp_path):
    need(ROOT)
    from core.dataset import from_project
    from core.project import Project

    data = totalseg_slices(ROOT, size=(32, 32), include_unlabelled=False)
    project = Project.create(tmp_path / "p")
    assert add_to_project(project, data) == 30
    back = from_project(project, kind="image2d")
    order = np.argsort(back.ids)
    np.testing.assert_allclose(back.x[order], data.x)
    # the project keeps only the labels in use (bladder and other never occur here)
    for j, name in enumerate(back.label_names):
        np.testing.assert_array_equal(back.y[order, j], data.y[:, ORGANS.index(name)])
    assert (back.split[order] == data.split).all()


def test_totalseg_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="example_ct.nii.gz"):
        totalseg_slices(tmp_path)
