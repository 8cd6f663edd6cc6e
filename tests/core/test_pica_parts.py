"""The 2D trunks and the two grayscale augmentation schemes PICA (and FixMatch) use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.methods.augment2d import cutout, strong_augment, to_unit_tensor, weak_augment
from core.models.backbones2d import build_backbone, resnet18_2d, vgg16_bn_2d


@pytest.mark.parametrize("make", [resnet18_2d, vgg16_bn_2d, lambda c: resnet18_2d(c, small_input=False)])
@pytest.mark.parametrize("size", [(28, 28), (33, 47)])
def test_trunks_map_any_size_to_512_features(make, size):
    torch.manual_seed(0)
    net = make(1).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *size))
    assert net.out_dim == 512 and out.shape == (2, 512) and torch.isfinite(out).all()


def test_build_backbone_by_name():
    assert isinstance(build_backbone("resnet18"), type(resnet18_2d()))
    assert build_backbone("vgg16_bn", in_channels=3).in_channels == 3
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("alexnet")


def test_small_input_stem_keeps_resolution():
    small, big = resnet18_2d(small_input=True), resnet18_2d(small_input=False)
    x = torch.rand(1, 1, 28, 28)
    assert small.stem(x).shape[-1] == 28 and big.stem(x).shape[-1] == 7


def _images(n=6):
    rng = np.random.default_rng(0)
    return to_unit_tensor(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))


def test_to_unit_tensor_scales_uint8_and_min_max_floats():
    x = to_unit_tensor(np.array([[[0, 255], [51, 102]]], dtype=np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.max() == 1.0 and x[0, 0, 1, 0].item() == pytest.approx(0.2)
    hu = to_unit_tensor(np.array([[[-1000.0, 400.0]]], dtype=np.float32))
    assert hu.min() == 0.0 and hu.max() == 1.0
    with pytest.raises(ValueError, match="2D images"):
        to_unit_tensor(np.zeros(5))


@pytest.mark.parametrize("aug", [weak_augment, strong_augment])
def test_augmentations_are_batched_seeded_and_in_range(aug):
    x = _images()
    a = aug(x, generator=torch.Generator().manual_seed(1))
    b = aug(x, generator=torch.Generator().manual_seed(1))
    c = aug(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x)
    # each image of the batch draws its own transform
    same = aug(x[:1].repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(same[0], same[1])


def test_cutout_fills_one_square():
    x = torch.zeros(3, 1, 20, 20)
    out = cutout(x, size=0.25, fill=0.5, generator=torch.Generator().manual_seed(0))
    assert ((out == 0.5).sum(dim=(1, 2, 3)) <= 25).all() and (out == 0.5).any()


def test_augmentations_refuse_integer_images():
    with pytest.raises(ValueError, match="float"):
        weak_augment(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_pica_intensity_sets_the_strong_schemes_jitter():
    from core.methods.pica import PICA

    # a flat image stays flat under the geometry (border padding) and the blur: only the
    # brightness / contrast / gamma jitter can change it
    flat = torch.full((4, 1, 28, 28), 0.5)
    kw0 = PICA(intensity=0.0)._strong_kwargs()
    assert kw0["brightness"] == kw0["contrast"] == kw0["gamma"] == 0.0
    out0 = strong_augment(flat, generator=torch.Generator().manual_seed(4), blur_p=1.0, cutout_size=0, **kw0)
    assert torch.allclose(out0, flat, atol=1e-6)
    out = strong_augment(flat, generator=torch.Generator().manual_seed(4), blur_p=1.0, cutout_size=0,
                         **PICA()._strong_kwargs())
    assert (out - flat).abs().amax(dim=(1, 2, 3)).min() > 1e-3
