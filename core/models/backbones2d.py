"""2D convolutional trunks for grayscale images of any size (no torchvision: written here).

Both map (B, C, H, W) with H, W >= 28 to (B, 512) features through adaptive average pooling and
expose ``out_dim = 512``:

* ``resnet18_2d`` — ResNet-18 (He et al. 2016), the trunk of the ultrasound PICA paper.
  ``small_input=True`` (default, for the 28 x 28 MedMNIST images of this project) uses a 3 x 3
  stride-1 stem without the initial max-pool (as MedMNIST v2's ResNet-18 (28) and CIFAR ResNets
  do): the ImageNet stem would shrink a 28 x 28 image to 7 x 7 before the first residual stage.
  ``small_input=False`` gives the ImageNet stem (7 x 7 stride 2 + max-pool) for 224-sized input.
* ``vgg16_bn_2d`` — VGG-16 with batch norm, then adaptive average pooling to 1 x 1 instead of the
  fully connected classifier (as DeepMCAT). Its max-pools use ``ceil_mode=True`` so that the five
  halvings leave a 1 x 1 map for a 28 x 28 input rather than 0 x 0; for sizes divisible by 32
  (224) ceil and floor pooling are identical, so the network is the standard VGG-16-BN there.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet2d", "VGG2d", "resnet18_2d", "vgg16_bn_2d", "build_backbone"]


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
    def __init__(self, layers=(2, 2, 2, 2), in_channels: int = 1, small_input: bool = True):
        super().__init__()
        if small_input:
            stem = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        else:
            stem = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1)]
        self.stem = nn.Sequential(*stem)
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
        self.small_input = small_input
        self.out_dim = 512
        _init_weights(self)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG2d(nn.Module):
    def __init__(self, cfg=_VGG16, in_channels: int = 1, batch_norm: bool = True):
        super().__init__()
        layers, c = [], in_channels
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
        return torch.flatten(self.pool(self.features(x)), 1)


def resnet18_2d(in_channels: int = 1, small_input: bool = True) -> nn.Module:
    """ResNet-18 trunk, (B, C, H, W) -> (B, 512). See the module docstring for ``small_input``."""
    return ResNet2d((2, 2, 2, 2), in_channels=in_channels, small_input=small_input)


def vgg16_bn_2d(in_channels: int = 1) -> nn.Module:
    """VGG-16-BN trunk with adaptive average pooling, (B, C, H, W) -> (B, 512)."""
    return VGG2d(_VGG16, in_channels=in_channels, batch_norm=True)


def build_backbone(name: str, in_channels: int = 1, small_input: bool = True) -> nn.Module:
    """Backbone by name ("resnet18" | "vgg16_bn"), for methods that take it as a hyperparameter."""
    name = name.lower().replace("-", "_")
    if name in ("resnet18", "resnet18_2d"):
        return resnet18_2d(in_channels, small_input=small_input)
    if name in ("vgg16_bn", "vgg16", "vgg16_bn_2d"):
        return vgg16_bn_2d(in_channels)  # small_input does not apply: ceil-mode pooling fits any size
    raise ValueError(f"unknown backbone {name!r}: use 'resnet18' or 'vgg16_bn'")
