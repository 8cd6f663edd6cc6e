"""Structures of a real TotalSegmentator CT: the slice with each organ's largest cross-section,
and previews cropped around the organ instead of the scan's middle slice."""
from __future__ import annotations

import numpy as np
import pytest

from core.focus import crop_around, structure_focus
from core.thumbnails import make_thumbnail
from tests.conftest import need
from tests.core.workflow_project import CT, CT_SEG


@pytest.fixture(scope="module")
def ct_and_seg():
    import SimpleITK as sitk

    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(need(CT))))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(need(CT_SEG))))
    return ct, seg


def test_focus_is_each_axis_largest_cross_section(ct_and_seg):
    _, seg = ct_and_seg
    for value in (2, 4, 5):  # kidney_right, gallbladder, liver
        m = seg == value
        focus = structure_focus(m)
        for axis, index in enumerate(focus):
            area = [np.count_nonzero(np.take(m, i, axis=axis)) for i in range(m.shape[axis])]
            assert area[index] == max(area) > 0
    # the right kidney and the gallbladder lie far below the CT's middle slice (15 of 30)
    assert structure_focus(seg == 2)[0] == 8 and structure_focus(seg == 4)[0] == 8
    assert structure_focus(seg == 21) is None  # no bladder in this scan


def test_crop_holds_the_structure_with_a_margin(ct_and_seg):
    _, seg = ct_and_seg
    m = (seg == 2)[8]
    rows, cols = crop_around(m)
    inside = np.zeros_like(m)
    inside[rows, cols] = True
    assert m[~inside].sum() == 0                      # nothing of the kidney is cut off
    r, c = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    assert rows.start < r[0] and rows.stop > r[-1] + 1 and cols.start < c[0] and cols.stop > c[-1] + 1
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < m.size / 4
    with pytest.raises(ValueError, match="non-empty"):
        crop_around(np.zeros((4, 4), bool))


def test_structure_thumbnails_differ_from_the_scans(ct_and_seg):
    ct, seg = ct_and_seg
    scan = make_thumbnail(ct, size=64, kind="volume")
    kidney = make_thumbnail(ct, size=64, kind="structure", mask=seg == 2)
    liver = make_thumbnail(ct, size=64, kind="structure", mask=seg == 5)
    for t in (kidney, liver):
        assert t.dtype == np.uint8 and t.ndim == 2 and 0 < max(t.shape) <= 64 and t.std() > 10
    assert kidney.shape != scan.shape and kidney.shape != liver.shape
    # an empty or mismatched mask falls back to the scan's own preview
    np.testing.assert_array_equal(make_thumbnail(ct, size=64, kind="structure", mask=seg == 21), scan)
    np.testing.assert_array_equal(make_thumbnail(ct, size=64, kind="structure", mask=seg[:-1] == 2), scan)
