"""2D convolutional trunks for grayscale images of any size (no torchvision: written here).

Both map (B, C, H, W) with H, W >= 28 to (B, 512) features through adaptive average pooling and
expose ``out_dim = 512``:

* ``resnet18_2d`` — ResNet-18 (He et al. 2016), the trunk of the ultrasound PICA paper.
  ``small_input=True`` (default, for the 28 x 28 MedMNIST images of this project) uses a 3 x 3
  stride-1 stem without the initial max-pool (as MedMNIST v2's ResNet-18 (28) and CIFAR ResNets
  do): the ImageNet stem would shrink a 28 x 28 image to 7 x 7 before the first residual stage.
  ``small_input=False`` gives the ImageNet stem (7 x 7 stride 2 + max-pool) for 224-sized input.
  ``stem`` names the stem directly: "small" (3 x 3 stride 1), "strided" (3 x 3 stride 2, for
  ~64 x 64 input) or "imagenet"; ``stem_for_size`` picks the one that brings an image of a given
  size to a 16-32 pixel map at the first residual stage, so compute per image stays about that of
  a 28-32 pixel image with the small stem whatever the input size.
* ``vgg16_bn_2d`` — VGG-16 with batch norm, then adaptive average pooling to 1 x 1 instead of the
  fully connected classifier (as DeepMCAT). Its max-pools use ``ceil_mode=True`` so that the five
  halvings leave a 1 x 1 map for a 28 x 28 input rather than 0 x 0; for sizes divisible by 32
  (224) ceil and floor pooling are identical, so the network is the standard VGG-16-BN there.
* ``convnet_2d`` — a small VGG-style trunk (two 3 x 3 conv-BN-ReLU per stage, widths 64-128-256
  as ``convnet`` or 32-64-128 as ``convnet_small``, out_dim the last width) for a CPU budget:
  at 28 px with bf16, ``convnet_small`` trains ~30x faster per image than ResNet-18 on one core.
  PICA's and DeepCluster's default trunk.

``build_backbone(..., pool_grid=g)`` pools every trunk's last map to g x g cells instead of one
(``out_dim`` x g^2). Global average pooling keeps what is in an image but not where; on
OrganAMNIST, whose left and right organs are near mirror images told apart by what lies beside
them, a 3 x 3 grid lifted DeepCluster (now its default) on 8,000 images and on the full set, and
PICA on 8,000 images but not on the full set (``bench/results/pool_grid_8k/``, ``pool_grid_full/``).
VGG-16 ends at 1 x 1 for 28 px input, so a grid there only repeats that cell.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet2d", "VGG2d", "ConvNet2d", "Sobel2d", "resnet18_2d", "vgg16_bn_2d", "convnet_2d",
           "build_backbone", "pool_to_grid",
           "stem_for_size", "bn_warm_start", "precise_bn", "STEMS"]

#: ResNet stems: 3x3 stride 1 (28-40 px), 3x3 stride 2 (41-96 px), 7x7 stride 2 + max-pool (larger)
STEMS = ("small", "strided", "imagenet")


def stem_for_size(size: int | None) -> str:
    """The ResNet stem for square images of ``size`` pixels (None or 0: 28, MedMNIST's size)."""
    size = int(size or 28)
    if size <= 40:
        return "small"
    if size <= 96:
        return "strided"
    return "imagenet"


def bn_warm_start(module: nn.Module, floor: float = 0.1) -> nn.Module:
    """Running BatchNorm statistics as the plain average of the batches seen while fewer than
    1 / ``floor`` have been (then the usual exponential average with momentum ``floor``).

    With PyTorch's fixed momentum 0.1 the running statistics start from mean 0 / variance 1
    and still weigh those made-up values by 0.9^t after t batches, so a network evaluated after
    a few steps (eval mode) sees features shifted far from what it trained on; for a clustering
    head that shift alone can send every image to one cluster. The hook only changes the
    momentum before each training-mode forward; it reads ``num_batches_tracked`` (saved in the
    state dict), so resumed runs stay exact. Returns ``module``."""

    def hook(m, _args):
        if m.training and m.track_running_stats and not getattr(m, "_precise_bn", False):
            m.momentum = max(float(floor), 1.0 / (int(m.num_batches_tracked) + 1))

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(hook)
    return module


@torch.no_grad()
def precise_bn(module: nn.Module, batches) -> int:
    """Recompute every BatchNorm's running statistics for the current weights ("precise BN",
    Wu & Johnson 2021): reset them, run ``batches`` (an iterable of input tensors) through
    ``module`` in training mode without gradients, and keep the plain average of those batches'
    statistics. Returns the number of batches used (0 leaves the statistics as they were).

    The exponential running average lags the weights: while a clustering network trains, the
    mean of its features moves by more than their spread across images within a few steps, so
    an evaluation in eval mode with lagging statistics can put every image in one cluster while
    the training batches use them all."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m._precise_bn = True
    from ..jobs.distributed import local_batchnorm

    was_training = module.training
    module.train()
    n = 0
    try:
        with local_batchnorm():  # torchrun: every rank recalibrates on the same batches
            for x in batches:
                module(x)
                n += 1
    finally:
        module.train(was_training)
        for m, (mom, mean, var, nbt) in zip(bns, saved):
            m.momentum = mom
            m._precise_bn = False
            if n == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
            m.num_batches_tracked.copy_(nbt)  # the training count goes on (bn_warm_start reads it)
    return n


class Sobel2d(nn.Module):
    """Fixed grayscale + Sobel filtering, (B, C, H, W) -> (B, 2, H, W) horizontal and vertical
    gradients (PICA's and DeepCluster's ``sobel`` input). No parameters; the filter is a
    non-persistent buffer, so state dicts are those of the plain trunk."""

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("weight", torch.stack([gx, gx.t()])[:, None], persistent=False)

    def forward(self, x):
        g = x.mean(1, keepdim=True)
        return nn.functional.conv2d(nn.functional.pad(g, (1, 1, 1, 1), mode="replicate"),
                                    self.weight.to(g.dtype))


def _init_weights(module: nn.Module) -> None:
    # torchvision's initialisation: He-normal (fan_out) convolutions, unit BN, zero biases.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet2d(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), in_channels: int = 1, small_input: bool = True,
                 stem: str | None = None, sobel: bool = False):
        super().__init__()
        stem = stem or ("small" if small_input else "imagenet")
        if stem not in STEMS:
            raise ValueError(f"unknown ResNet stem {stem!r}: use one of {', '.join(STEMS)}")
        self.sobel = Sobel2d() if sobel else None
        c_in = 2 if sobel else in_channels
        if stem == "small":
            layers_ = [nn.Conv2d(c_in, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        elif stem == "strided":
            layers_ = [nn.Conv2d(c_in, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        else:
            layers_ = [nn.Conv2d(c_in, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                       nn.MaxPool2d(3, 2, 1)]
        self.stem = nn.Sequential(*layers_)
        self.stem_name = stem
        stages, planes_in = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(planes_in, planes, stride=2 if (i > 0 and j == 0) else 1))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels
        self.small_input = stem == "small"
        self.out_dim = 512
        _init_weights(self)

    def forward(self, x):
        if self.sobel is not None:
            x = self.sobel(x)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG2d(nn.Module):
    def __init__(self, cfg=_VGG16, in_channels: int = 1, batch_norm: bool = True, sobel: bool = False):
        super().__init__()
        self.sobel = Sobel2d() if sobel else None
        self.stem_name = "vgg"
        layers, c = [], 2 if sobel else in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers.append(nn.Conv2d(c, v, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels
        self.out_dim = 512
        _init_weights(self)

    def forward(self, x):
        if self.sobel is not None:
            x = self.sobel(x)
        return torch.flatten(self.pool(self.features(x)), 1)


class ConvNet2d(nn.Module):
    """A small VGG-style trunk for 28-32 px inputs on a CPU budget: ``widths`` stages of
    ``depth`` x (3x3 conv, BN, ReLU), 2 x 2 max-pool between stages, global average pooling
    (``pool_to_grid`` for a grid of cells).
    ~1/20 of ResNet-18's compute at 28 px. The stem (first conv) follows the ResNet stems:
    stride 1 ("small"), stride 2 ("strided") or stride 2 + max-pool ("imagenet"), so larger
    inputs reach the first stage at 16-32 px too."""

    def __init__(self, widths=(64, 128, 256), depth: int = 2, in_channels: int = 1, stem: str = "small",
                 sobel: bool = False):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}: use one of {', '.join(STEMS)}")
        self.sobel = Sobel2d() if sobel else None
        self.stem_name = stem
        c = 2 if sobel else in_channels
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            for j in range(int(depth)):
                stride = 2 if (i == 0 and j == 0 and stem != "small") else 1
                layers += [nn.Conv2d(c, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                if i == 0 and j == 0 and stem == "imagenet":
                    layers.append(nn.MaxPool2d(3, 2, 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels
        self.small_input = stem == "small"
        self.out_dim = int(widths[-1])
        _init_weights(self)

    def forward(self, x):
        if self.sobel is not None:
            x = self.sobel(x)
        return torch.flatten(self.pool(self.features(x)), 1)


def convnet_2d(in_channels: int = 1, stem: str = "small", sobel: bool = False, widths=(64, 128, 256),
               depth: int = 2) -> nn.Module:
    """Small VGG-style trunk, (B, C, H, W) -> (B, widths[-1])."""
    return ConvNet2d(widths, depth, in_channels=in_channels, stem=stem, sobel=sobel)


def resnet18_2d(in_channels: int = 1, small_input: bool = True, stem: str | None = None,
                sobel: bool = False) -> nn.Module:
    """ResNet-18 trunk, (B, C, H, W) -> (B, 512). See the module docstring for the stems."""
    return ResNet2d((2, 2, 2, 2), in_channels=in_channels, small_input=small_input, stem=stem, sobel=sobel)


def vgg16_bn_2d(in_channels: int = 1, sobel: bool = False) -> nn.Module:
    """VGG-16-BN trunk with adaptive average pooling, (B, C, H, W) -> (B, 512)."""
    return VGG2d(_VGG16, in_channels=in_channels, batch_norm=True, sobel=sobel)


def pool_to_grid(trunk: nn.Module, grid: int = 1) -> nn.Module:
    """Average-pool the last feature map to ``grid`` x ``grid`` cells instead of one, and
    flatten them: ``out_dim`` grows by ``grid``^2. One cell (global average pooling) keeps what
    is in the image but not where; OrganAMNIST's left and right organs are near mirror images
    told apart by what lies beside them, which a coarse grid keeps. In place; returns ``trunk``."""
    grid = int(grid)
    if grid < 1:
        raise ValueError(f"pool_grid must be >= 1, got {grid}")
    if grid > 1:
        trunk.pool = nn.AdaptiveAvgPool2d(grid)
        trunk.out_dim = int(trunk.out_dim) * grid * grid
    trunk.pool_grid = grid
    return trunk


def build_backbone(name: str, in_channels: int = 1, small_input: bool = True, *, stem: str | None = None,
                   input_size: int | None = None, sobel: bool = False, pool_grid: int = 1) -> nn.Module:
    """Backbone by name ("resnet18" | "vgg16_bn"), for methods that take it as a hyperparameter.

    ResNet stem: ``stem`` when given, else ``stem_for_size(input_size)`` when ``small_input``
    (28 px when the size is not given), else the ImageNet stem. Every BatchNorm layer averages
    its first batches evenly (``bn_warm_start``). ``pool_grid`` > 1 pools the last map to a grid
    of cells (``pool_to_grid``)."""
    return pool_to_grid(_named_backbone(name, in_channels, small_input, stem, input_size, sobel), pool_grid)


def _named_backbone(name, in_channels, small_input, stem, input_size, sobel) -> nn.Module:
    name = name.lower().replace("-", "_")
    if name in ("resnet18", "resnet18_2d"):
        stem = stem or (stem_for_size(input_size) if small_input else "imagenet")
        return bn_warm_start(resnet18_2d(in_channels, stem=stem, sobel=sobel))
    if name in ("convnet", "convnet_2d"):
        stem = stem or (stem_for_size(input_size) if small_input else "imagenet")
        return bn_warm_start(convnet_2d(in_channels, stem=stem, sobel=sobel))
    if name == "convnet_small":  # half the widths (32, 64, 128): ~1/4 of convnet's compute (PICA/DeepCluster default)
        stem = stem or (stem_for_size(input_size) if small_input else "imagenet")
        return bn_warm_start(convnet_2d(in_channels, stem=stem, sobel=sobel, widths=(32, 64, 128)))
    if name in ("vgg16_bn", "vgg16", "vgg16_bn_2d"):
        # small_input / stem do not apply: ceil-mode pooling fits any size
        return bn_warm_start(vgg16_bn_2d(in_channels, sobel=sobel))
    raise ValueError(f"unknown backbone {name!r}: use 'resnet18', 'convnet', 'convnet_small' or 'vgg16_bn'")
