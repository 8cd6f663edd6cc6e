"""PointNet encoder (Qi et al. 2017) as the inner-ear DeepDiffusion paper uses it.

P x 3 points -> input transform net (3 x 3) -> shared MLP 64, 64 -> feature transform net
(64 x 64) -> shared MLP 64, 128, 1024 -> max pool -> FC 512 -> FC ``out_dim`` (paper: 254).
The output is the raw feature h; DeepDiffusion l2-normalises it itself.
"""
from __future__ import annotations

import torch
from torch import nn


class SharedMLP(nn.Module):
    """Per-point Linear + BatchNorm + ReLU layers on B x P x C (the paper's 1x1 convolutions).

    Points are flattened to (B*P) x C: the same BatchNorm statistics as Conv1d + BatchNorm1d
    over (B, C, P), and a plain matrix product, which runs faster than Conv1d on the CPU.
    """

    def __init__(self, channels: list[int]):
        super().__init__()
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, c = x.shape
        return self.layers(x.reshape(b * p, c)).view(b, p, -1)


def _shared_mlp(channels: list[int]) -> SharedMLP:
    return SharedMLP(channels)


class TNet(nn.Module):
    """Predicts a k x k alignment matrix from B x P x k point features (starts at identity)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.mlp = _shared_mlp([k, 64, 128, 1024])
        self.fc = nn.Sequential(
            nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
            nn.Linear(256, k * k))
        # the regression starts at zero so the transform starts as the identity
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.mlp(x).amax(dim=1)
        eye = torch.eye(self.k, device=x.device, dtype=g.dtype)
        return self.fc(g).view(-1, self.k, self.k) + eye


class PointNetEncoder(nn.Module):
    """``forward(points B x P x 3) -> B x out_dim``. ``transform_nets=False`` drops both T-nets."""

    def __init__(self, out_dim: int = 254, *, transform_nets: bool = True):
        super().__init__()
        self.out_dim = out_dim
        self.input_tnet = TNet(3) if transform_nets else None
        self.mlp1 = _shared_mlp([3, 64, 64])
        self.feature_tnet = TNet(64) if transform_nets else None
        self.mlp2 = _shared_mlp([64, 64, 128, 1024])
        self.head = nn.Sequential(nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                  nn.Linear(512, out_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"PointNetEncoder expects B x P x 3 points, got {tuple(points.shape)}")
        x = points                                                  # B x P x 3
        if self.input_tnet is not None:
            x = torch.bmm(x, self.input_tnet(x))                    # each point row times T
        x = self.mlp1(x)
        if self.feature_tnet is not None:
            x = torch.bmm(x, self.feature_tnet(x))
        x = self.mlp2(x).amax(dim=1)                                # symmetric max pool
        return self.head(x)
