"""Resampling, intensity normalisation, resize and ROI crops on the real example CT and MRI."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from core.preprocess import (bounding_box, crop_box, crop_to_mask, percentile_normalise,
                             resample_array, resample_image, resize, zscore)
from core.preprocess.transforms import (Compose, CropToMask, PercentileNormalise, ResampleToSpacing,
                                        Resize, ZScore)
from tests.conftest import DATA, need


@pytest.fixture(scope="module")
def ct():
    return sitk.ReadImage(str(need(DATA / "totalseg_example/example_ct_sm.nii.gz")))


@pytest.fixture(scope="module")
def seg():
    return sitk.ReadImage(str(need(DATA / "totalseg_example/example_seg.nii.gz")))


def test_resample_ct_and_labels_to_target_spacing(ct, seg):
    assert ct.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))
    out = resample_image(ct, 1.5)
    assert out.GetSpacing() == pytest.approx((1.5, 1.5, 1.5))
    assert out.GetSize() == tuple(2 * s for s in ct.GetSize())
    # Same physical box: the first voxel's outer edge stays put (origin moves by (1.5 - 3) / 2).
    d = np.asarray(ct.GetDirection()).reshape(3, 3)
    assert out.GetOrigin() == pytest.approx(tuple(np.asarray(ct.GetOrigin()) + d @ np.full(3, -0.75)))
    assert out.GetDirection() == pytest.approx(ct.GetDirection())
    assert out.GetPixelID() == sitk.sitkFloat32
    a, b = sitk.GetArrayFromImage(ct).astype(np.float64), sitk.GetArrayFromImage(out)
    # Linear interpolation stays within the input range and keeps the mean intensity (no
    # zero-filled border from a grid reaching past the input).
    assert b.min() >= a.min() - 1e-3 and b.max() <= a.max() + 1e-3
    assert abs(b.mean() - a.mean()) < 0.02 * a.std()
    # Label maps: nearest neighbour keeps the ids (no blends like 3 between 1 and 5).
    lab = resample_image(seg, (1.5, 1.5, 1.5), is_label=True)
    assert lab.GetPixelID() == seg.GetPixelID()
    ids_in, ids_out = (set(np.unique(sitk.GetArrayFromImage(x))) for x in (seg, lab))
    assert ids_out <= ids_in and {0, 1, 5} <= ids_out
    liver_in = (sitk.GetArrayFromImage(seg) == 5).sum() * 27.0
    liver_out = (sitk.GetArrayFromImage(lab) == 5).sum() * 1.5 ** 3
    assert liver_out == pytest.approx(liver_in, rel=0.02)  # same physical volume (mm^3)


def test_resample_array_anisotropic_and_to_0125(ct):
    arr = sitk.GetArrayFromImage(ct)  # (z, y, x) = (30, 101, 122)
    small = arr[10:14, 40:48, 50:60]
    out, sp = resample_array(small, (3.0, 3.0, 3.0), 0.125)
    assert sp == (0.125, 0.125, 0.125)
    assert out.shape == (4 * 24, 8 * 24, 10 * 24)
    out2, sp2 = resample_array(arr, (3.0, 3.0, 3.0), (6.0, 1.5, 3.0))
    assert out2.shape == (15, 202, 122) and sp2 == (6.0, 1.5, 3.0)
    with pytest.raises(ValueError, match="positive"):
        resample_array(arr, (3.0, 0, 3.0), 1.0)


def test_percentile_normalise_on_ct(ct):
    x = sitk.GetArrayFromImage(ct)
    y = percentile_normalise(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.percentile(y, 5) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(y, 95) == pytest.approx(1.0, abs=1e-5)
    assert y.min() < 0 and y.max() > 1  # not clipped unless asked
    yc = percentile_normalise(x, clip=True)
    assert yc.min() == 0.0 and yc.max() == 1.0
    body = x > -500
    yb = percentile_normalise(x, mask=body)
    assert np.percentile(yb[body], 95) == pytest.approx(1.0, abs=1e-5)
    assert not percentile_normalise(np.full((4, 4), 7.0)).any()  # constant image: zeros


def test_zscore_on_mri():
    img = sitk.ReadImage(str(need(DATA / "nifti_samples/anatomical.nii")))
    x = sitk.GetArrayFromImage(img)
    z = zscore(x)
    assert z.dtype == np.float32
    assert z.mean() == pytest.approx(0.0, abs=1e-5) and z.std() == pytest.approx(1.0, abs=1e-4)
    m = x > np.percentile(x, 50)
    zm = zscore(x, mask=m)
    assert zm[m].mean() == pytest.approx(0.0, abs=1e-4)
    assert not zscore(np.ones((3, 3, 3))).any()


def test_resize_2d_3d_and_labels(ct, seg):
    x = sitk.GetArrayFromImage(ct).astype(np.float32)
    r = resize(x, (16, 64, 64))
    assert r.shape == (16, 64, 64) and r.dtype == np.float32
    assert abs(r.mean() - x.mean()) < 0.05 * x.std()
    s = sitk.GetArrayFromImage(seg)
    rs = resize(s, (16, 64, 64), is_label=True)
    assert rs.dtype == s.dtype and set(np.unique(rs)) <= set(np.unique(s))
    assert resize(x[15], (50, 60)).shape == (50, 60)
    rgb = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    assert resize(rgb, (10, 15)).shape == (10, 15, 3)
    with pytest.raises(ValueError, match="resize"):
        resize(x, (10, 10))


def test_roi_crops(ct, seg):
    x = sitk.GetArrayFromImage(ct)
    liver = sitk.GetArrayFromImage(seg) == 5
    box = bounding_box(liver)
    idx = np.argwhere(liver)
    assert [b.start for b in box] == idx.min(0).tolist()
    assert [b.stop for b in box] == (idx.max(0) + 1).tolist()
    crop, box2 = crop_to_mask(x, liver, margin=3, return_box=True)
    assert crop.shape == tuple(b.stop - b.start for b in box2)
    assert all(b2.start == max(0, b.start - 3) for b, b2 in zip(box, box2))
    assert liver[box2].sum() == liver.sum()  # nothing of the organ cut off
    # A fixed-size box reaching past the border is padded, not shrunk.
    roi = crop_box(x, (-2, 10, 100), (6, 42, 132), pad_value=-1024)
    assert roi.shape == (8, 32, 32)
    assert (roi[:2] == -1024).all() and (roi[:, :, -10:] == -1024).all()
    np.testing.assert_array_equal(roi[2:, :, :22], x[0:6, 10:42, 100:122])
    with pytest.raises(ValueError, match="outside"):
        crop_box(x, (100, 0, 0), (110, 5, 5))
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros((3, 3)))


def test_transforms_compose(ct, seg):
    x = sitk.GetArrayFromImage(ct)
    liver = sitk.GetArrayFromImage(seg) == 5
    pipeline = Compose([CropToMask(margin=2), lambda d: d[0], PercentileNormalise(), Resize((8, 32, 32))])
    out = pipeline((x, liver))
    assert out.shape == (8, 32, 32) and out.dtype == np.float32
    arr, sp = ResampleToSpacing(6.0)((x, (3.0, 3.0, 3.0)))
    assert arr.shape == (15, 50, 61) and sp == (6.0, 6.0, 6.0)
    assert ResampleToSpacing(6.0, is_label=True)(seg).GetSize() == (61, 50, 15)
    assert ZScore()(x).std() == pytest.approx(1.0, abs=1e-4)
    from monai.transforms import Compose as MonaiCompose

    assert MonaiCompose([PercentileNormalise(clip=True)])(x).max() == 1.0
