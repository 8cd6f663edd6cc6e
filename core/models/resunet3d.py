"""3D ResUNet-18 of the residual self-supervision paper (reference ``models/ResUNet_3D.py``).

A 3D ResNet-18 encoder (7^3 stride-2 stem, max-pool, four stages of two basic blocks, 64-128-256-512
channels) with a U-Net decoder that reconstructs a volume (the residual), and a classification head
on the average-pooled encoder output (512-256-2). Every SSL baseline and the supervised baseline
use this same encoder, so their fine-tuning starts from the same architecture.

Faithful to the reference, including its peculiarities:
* the basic block's identity path is a 3^3 convolution ``conv0`` (replaced by the 1^3
  conv + BN ``downsample`` where one exists);
* the last decoder block is applied twice (at 1/4 and 1/2 resolution) with shared weights.
Upsampling goes to the skip connection's size rather than by a fixed factor 2: identical for
64^3 inputs and it makes sizes like 28^3 (7 -> 4 -> 2 -> 1 in the encoder) work.
``widen_factor`` scales all widths (reference option), used for quick CPU runs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv3x3x3(c_in, c_out, stride=1):
    return nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv0 = conv3x3x3(in_planes, planes, stride)
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        # The reference computes conv0 even where downsample replaces it; skip that dead work.
        residual = self.downsample(x) if self.downsample is not None else self.conv0(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + residual)


class Up3d(nn.Module):
    """Concatenate the skip (if any), one basic block, then upsample (trilinear) to ``size``."""

    def __init__(self, in_channels: int, out_channels: int, single: bool = False):
        super().__init__()
        self.conv = BasicBlock(in_channels if single else in_channels * 2, out_channels)

    def forward(self, x1, x2=None, *, size):
        x = x1 if x2 is None else torch.cat([x2, x1], dim=1)
        return F.interpolate(self.conv(x), size=size, mode="trilinear")


class ResUNet3D(nn.Module):
    """``forward(x) -> (reconstruction_logits, class_logits)`` as the reference's ResUNet."""

    def __init__(self, *, layers=(2, 2, 2, 2), widen_factor: float = 1.0, n_input_channels: int = 1,
                 n_classes: int = 2):
        super().__init__()
        planes = [int(p * widen_factor) for p in (64, 128, 256, 512)]
        self.planes = planes
        self.feature_dim = planes[3]
        self.in_planes = planes[0]
        self.conv1 = nn.Conv3d(n_input_channels, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.deconv1 = nn.Conv3d(planes[0], n_input_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(planes[0])
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.encoder_layer1 = self._make_layer(planes[0], layers[0])
        self.encoder_layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.encoder_layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.encoder_layer4 = self._make_layer(planes[3], layers[3], stride=2)
        self.decoder_layer4 = Up3d(planes[3], planes[2], single=True)
        self.decoder_layer3 = Up3d(planes[2], planes[1])
        self.decoder_layer2 = Up3d(planes[1], planes[0])
        self.decoder_layer1 = Up3d(planes[0], planes[0])
        self.fc = nn.Sequential(nn.Linear(planes[3], planes[3] // 2), nn.ReLU(),
                                nn.Linear(planes[3] // 2, n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes:
            downsample = nn.Sequential(nn.Conv3d(self.in_planes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm3d(planes))
        layers = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    # ------------------------------------------------------------------ parts
    def encoder_modules(self) -> list[str]:
        """Names of the encoder's submodules (what SSL pretraining hands to fine-tuning)."""
        return ["conv1", "bn1", "encoder_layer1", "encoder_layer2", "encoder_layer3", "encoder_layer4"]

    def encoder_state_dict(self) -> dict:
        keep = tuple(n + "." for n in self.encoder_modules())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}

    def encoder_parameters(self):
        for name in self.encoder_modules():
            yield from getattr(self, name).parameters()

    def encode_maps(self, x):
        x1 = F.relu(self.bn1(self.conv1(x)))
        x2 = self.maxpool(x1)
        x3 = self.encoder_layer1(x2)
        x4 = self.encoder_layer2(x3)
        x5 = self.encoder_layer3(x4)
        x6 = self.encoder_layer4(x5)
        return x1, x2, x3, x4, x5, x6

    def features(self, x) -> torch.Tensor:
        """Average-pooled encoder output (N x 512): the embedding and the head's input."""
        return F.adaptive_avg_pool3d(self.encode_maps(x)[-1], 1).flatten(1)

    def classify(self, x) -> torch.Tensor:
        return self.fc(self.features(x))

    def reconstruct(self, x, maps=None) -> torch.Tensor:
        x1, x2, x3, x4, x5, x6 = maps if maps is not None else self.encode_maps(x)
        dx6 = self.decoder_layer4(x6, None, size=x5.shape[2:])
        dx5 = self.decoder_layer3(x5, dx6, size=x4.shape[2:])
        dx4 = self.decoder_layer2(x4, dx5, size=x3.shape[2:])
        dx3 = self.decoder_layer1(x3, dx4, size=x1.shape[2:])
        up2 = F.interpolate(x2, size=x1.shape[2:], mode="trilinear")
        dx2 = self.decoder_layer1(up2, dx3, size=x.shape[2:])
        return F.interpolate(self.deconv1(dx2), size=x.shape[2:], mode="trilinear")

    def forward(self, x):
        maps = self.encode_maps(x)
        logits = self.fc(F.adaptive_avg_pool3d(maps[-1], 1).flatten(1))
        return self.reconstruct(x, maps), logits

    def stage_shapes(self, x) -> dict:
        maps = self.encode_maps(x)
        out = {f"unet_x{i + 1}": tuple(m.shape) for i, m in enumerate(maps)}
        x1, x2, x3, x4, x5, x6 = maps
        dx6 = self.decoder_layer4(x6, None, size=x5.shape[2:])
        dx5 = self.decoder_layer3(x5, dx6, size=x4.shape[2:])
        dx4 = self.decoder_layer2(x4, dx5, size=x3.shape[2:])
        dx3 = self.decoder_layer1(x3, dx4, size=x1.shape[2:])
        dx2 = self.decoder_layer1(F.interpolate(x2, size=x1.shape[2:], mode="trilinear"), dx3, size=x.shape[2:])
        out.update({"unet_dx_6": tuple(dx6.shape), "unet_dx_5": tuple(dx5.shape), "unet_dx_4": tuple(dx4.shape),
                    "unet_dx_3": tuple(dx3.shape), "unet_dx_2": tuple(dx2.shape)})
        rec, logits = self.forward(x)
        out["unet_dx_out"] = tuple(rec.shape)
        out["unet_cls_logits"] = tuple(logits.shape)
        return out


def resunet18(**kwargs) -> ResUNet3D:
    return ResUNet3D(layers=(2, 2, 2, 2), **kwargs)
