"""Input size for the 2D methods (resize on load, stem by size) and precise BatchNorm statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.methods.augment2d import resize_images
from core.models.backbones2d import build_backbone, precise_bn, stem_for_size


def test_resize_images_keeps_dtype_and_values(shared_data):
    d = np.load(shared_data / "breastmnist" / "breastmnist.npz")
    x = d["train_images"][:5]
    up = resize_images(x, 64)
    assert up.shape == (5, 64, 64) and up.dtype == np.uint8
    # bilinear upsampling keeps the image's mean brightness (within rounding and border effects)
    np.testing.assert_allclose(up.reshape(5, -1).mean(1), x.reshape(5, -1).mean(1), atol=1.5)
    assert resize_images(x, 0) is x and resize_images(x, 28) is x
    flat = np.full((2, 1, 30, 30), 0.25, dtype=np.float32)
    out = resize_images(flat, 16)
    assert out.shape == (2, 1, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="input_size"):
        resize_images(x, 4)


def test_stem_follows_input_size():
    assert [stem_for_size(s) for s in (0, 28, 40, 64, 96, 128, 224)] == \
        ["small", "small", "small", "strided", "strided", "imagenet", "imagenet"]
    for size, stem in ((28, "small"), (64, "strided"), (128, "imagenet")):
        net = build_backbone("resnet18", 1, input_size=size)
        assert net.stem_name == stem
        assert net(torch.rand(2, 1, size, size)).shape == (2, 512)
    assert build_backbone("resnet18", 1, small_input=False, input_size=28).stem_name == "imagenet"
    # the small ConvNet trunks (PICA / DeepCluster defaults) follow the same stems
    for name, dim in (("convnet", 256), ("convnet_small", 128)):
        for size, stem in ((28, "small"), (64, "strided"), (128, "imagenet")):
            net = build_backbone(name, 1, input_size=size)
            assert net.stem_name == stem and net.out_dim == dim
            assert net(torch.rand(2, 1, size, size)).shape == (2, dim)
    sob = build_backbone("resnet18", 1, sobel=True)
    assert sob.stem[0].in_channels == 2 and "sobel.weight" not in sob.state_dict()


def test_precise_bn_is_the_average_of_batch_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    batches = [torch.randn(8, 3, dtype=torch.float64) * (i + 1) + i for i in range(4)]
    bn = bn.double()
    bn.train()
    bn(torch.randn(8, 3, dtype=torch.float64) * 50)  # stale statistics to be replaced
    assert precise_bn(bn, batches) == 4
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1 and bn.training


def test_pool_grid_widens_the_features_and_survives_a_checkpoint():
    """``pool_grid`` pools the last map to a grid of cells (out_dim x grid^2) for every trunk;
    PICA and DeepCluster trained with it reload as the same network, and checkpoints from
    before the option (no ``pool_grid`` in their trunk config) rebuild global average pooling."""
    from tests.conftest import organamnist_per_class
    from core.methods.deepcluster import DeepCluster
    from core.methods.pica import PICA

    for name, dim in (("convnet_small", 128), ("resnet18", 512)):
        assert build_backbone(name, 1).out_dim == dim
        net = build_backbone(name, 1, pool_grid=3)
        assert net.out_dim == 9 * dim and net.pool_grid == 3
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 9 * dim)
    with pytest.raises(ValueError, match="pool_grid"):
        build_backbone("convnet_small", 1, pool_grid=0)

    torch.set_num_threads(2)
    organ = organamnist_per_class(2)
    pica = PICA(pool_grid=3, epochs=1, batch_size=11, n_clusters=4, n_overclusters=8, eval_samples=0,
                device="cpu")
    dc = DeepCluster(pool_grid=3, epochs=1, batch_size=11, n_clusters=4, device="cpu")
    list(pica.steps(organ))
    assert pica.transform(organ).shape == (22, 9 * 128)  # PICA's features are the trunk's
    list(dc.steps(organ))
    for m in (pica, dc):
        assert m.model_.trunk.out_dim == 9 * 128
        state = m.state_dict()
        assert state["trunk_config"]["pool_grid"] == 3
        again = type(m).from_checkpoint(state)
        assert again.model_.trunk.pool_grid == 3
        np.testing.assert_array_equal(again.predict_clusters(organ), m.predict_clusters(organ))
    old = PICA(epochs=1, batch_size=11, n_clusters=4, n_overclusters=8, eval_samples=0, device="cpu")
    list(old.steps(organ))
    state = old.state_dict()
    state["trunk_config"] = {k: v for k, v in state["trunk_config"].items() if k != "pool_grid"}
    legacy = PICA.from_checkpoint(state)
    assert legacy.model_.trunk.pool_grid == 1 and legacy.get_params()["pool_grid"] == 1
    # the same for DeepCluster, whose default is now the grid: an old run reports what it is
    old_dc = DeepCluster(pool_grid=1, epochs=1, batch_size=11, n_clusters=4, device="cpu")
    list(old_dc.steps(organ))
    state = old_dc.state_dict()
    state["params"] = {k: v for k, v in state["params"].items() if k != "pool_grid"}
    state["trunk_config"] = {k: v for k, v in state["trunk_config"].items() if k != "pool_grid"}
    legacy_dc = DeepCluster.from_checkpoint(state)
    assert legacy_dc.model_.trunk.pool_grid == 1 and legacy_dc.get_params()["pool_grid"] == 1
    np.testing.assert_array_equal(legacy_dc.predict_clusters(organ), old_dc.predict_clusters(organ))
