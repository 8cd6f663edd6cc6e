"""MONAI UNet segmenter on the TotalSegmentator example CT (liver 5, spleen 1), then mask -> mesh."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import DATA, need

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from core.preprocess.segmentation import UNetSegmenter  # noqa: E402
from core.preprocess.shapes import mask_to_mesh, mask_to_points  # noqa: E402

# Small enough for a few seconds on 2 CPU cores: the 122 x 101 x 30 CT at 3 mm is resized to
# 16 x 48 x 64 and trained on 16 x 32 x 32 patches.
PARAMS = dict(labels=(5, 1), input_size=(16, 48, 64), patch_size=(16, 32, 32), channels=(8, 16, 32),
              epochs=6, patches_per_volume=4, batch_size=2, lr=1e-2, seed=0, device="cpu")


@pytest.fixture(scope="module")
def ct_and_seg():
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(need(DATA / "totalseg_example/example_ct_sm.nii.gz"))))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(need(DATA / "totalseg_example/example_seg.nii.gz"))))
    return ct, seg


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny 3-D convolutions gain nothing from intra-op threads on a shared 2-core runner.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(ct_and_seg):
    ct, seg = ct_and_seg
    model = UNetSegmenter(**PARAMS)
    progress = list(model.steps((ct, seg)))
    return model, progress


def test_training_lowers_the_loss_and_predicts_label_maps(trained, ct_and_seg):
    ct, seg = ct_and_seg
    model, progress = trained
    assert len(progress) == 12 and progress[-1].epoch_end and progress[-1].global_step == 12
    losses = np.array([p.losses["dice_ce"] for p in progress])
    assert np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.8 * losses[:3].mean()
    pred = model.predict(ct)
    assert pred.shape == ct.shape and pred.dtype == np.uint8
    assert set(np.unique(pred)) <= {0, 1, 5}
    liver = pred == 5
    assert liver.any()
    # Better than chance already: predicted liver overlaps the reference liver.
    ref = seg == 5
    dice = 2 * (liver & ref).sum() / (liver.sum() + ref.sum())
    assert dice > 0.2
    proba = model.predict_proba(ct)
    assert proba.shape == (3,) + ct.shape
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-4)
    assert len(model.predict([ct, ct[:, :50]])) == 2


def test_mask_to_mesh_on_predicted_and_reference_liver(trained, ct_and_seg):
    import trimesh

    ct, seg = ct_and_seg
    model, _ = trained
    for mask in (seg == 5, model.predict(ct) == 5):
        verts, faces = mask_to_mesh(mask, spacing=(3.0, 3.0, 3.0))
        tm = trimesh.Trimesh(verts, faces, process=False)
        assert tm.is_watertight and tm.volume > 0
        pts = mask_to_points(mask, spacing=(3.0, 3.0, 3.0))
        assert pts.shape == (1024, 3)
    # The reference liver mesh encloses about the liver's voxel volume (38634 voxels of 27 mm^3).
    verts, faces = mask_to_mesh(seg == 5, spacing=(3.0, 3.0, 3.0))
    vol = trimesh.Trimesh(verts, faces, process=False).volume
    assert vol == pytest.approx((seg == 5).sum() * 27.0, rel=0.1)


def test_resume_continues_exactly(trained, ct_and_seg):
    ct, seg = ct_and_seg
    _, full = trained
    model = UNetSegmenter(**PARAMS)
    gen = model.steps((ct, seg))
    first = [next(gen) for _ in range(5)]
    gen.close()
    state = model.state_dict()
    resumed = UNetSegmenter.from_checkpoint(state)
    rest = list(resumed.steps((ct, seg), resume=state))
    assert [p.global_step for p in first + rest] == list(range(1, 13))
    np.testing.assert_allclose([p.losses["dice_ce"] for p in first + rest],
                               [p.losses["dice_ce"] for p in full], rtol=1e-4)


def test_clear_errors(ct_and_seg):
    ct, seg = ct_and_seg
    with pytest.raises(ValueError, match="divisible"):
        UNetSegmenter(patch_size=(10, 32, 32)).fit(ct, seg)
    with pytest.raises(ValueError, match="mask shape"):
        UNetSegmenter(**PARAMS).fit(ct, seg[:, :10])
    with pytest.raises(ValueError, match="labels"):
        UNetSegmenter(labels=(0,)).fit(ct, seg)
    with pytest.raises(RuntimeError, match="not fitted"):
        UNetSegmenter().predict(ct)
