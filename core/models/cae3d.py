"""The 3D convolutional autoencoder of the residual self-supervision paper (Bhattacharya et al.).

Encoder: per filter step a 5^3 stride-2 convolution, batch norm and leaky ReLU (1-16-32-64), a
1x1x1 convolution down to 64/16 = 4 channels, flatten and a linear map to the 512-d latent.
Decoder: linear back, 1x1x1 convolution to 64 channels, then per step a 5^3 stride-1 convolution,
batch norm, leaky ReLU and x2 trilinear upsampling (64-32-16-1). The output is resized (nearest)
to the input size, so sizes that are not powers of two (28^3) work as in the reference.
Module names follow the reference so the parameter list can be compared one to one.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _encoded_size(size: int, n_down: int) -> int:
    for _ in range(n_down):
        size = (size + 2 * 2 - 5) // 2 + 1  # kernel 5, stride 2, padding 2
    return size


class CAE3D(nn.Module):
    """``CAE3D(input_size=64)``: the paper's AE for cubic inputs of ``input_size``^3 voxels.

    ``fc_input_dim`` follows from the input size (2048 for 64^3, as in the reference config).
    """

    def __init__(self, *, input_size: int = 64, filters=(1, 16, 32, 64), latent_dim: int = 512):
        super().__init__()
        self.input_size = int(input_size)
        self.filters = tuple(int(f) for f in filters)
        self.latent_dim = int(latent_dim)
        bottleneck = self.filters[-1] // 16
        side = _encoded_size(self.input_size, len(self.filters) - 1)
        self.bottleneck_shape = (bottleneck, side, side, side)
        self.fc_input_dim = bottleneck * side ** 3

        # Registered before the encoder, as in the reference, so parameter order matches it.
        self.fc = nn.Linear(self.fc_input_dim, self.latent_dim)
        enc = []
        c_in = self.filters[0]
        for h in self.filters[1:]:
            enc.append(nn.Sequential(nn.Conv3d(c_in, h, kernel_size=5, stride=2, padding=2),
                                     nn.BatchNorm3d(h), nn.LeakyReLU()))
            c_in = h
        enc.append(nn.Conv3d(self.filters[-1], bottleneck, kernel_size=1))
        self.encoder = nn.Sequential(*enc)

        self.decoder_input = nn.Linear(self.latent_dim, self.fc_input_dim)
        dec = [nn.Conv3d(bottleneck, self.filters[-1], kernel_size=1)]
        rev = self.filters[::-1]
        for a, b in zip(rev[:-1], rev[1:]):
            dec.append(nn.Sequential(nn.Conv3d(a, b, kernel_size=5, stride=1, padding=2),
                                     nn.BatchNorm3d(b), nn.LeakyReLU(),
                                     nn.Upsample(scale_factor=2, mode="trilinear")))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.encoder(x), start_dim=1))

    def decode(self, z: torch.Tensor, size=None) -> torch.Tensor:
        h = self.decoder_input(z).reshape(z.shape[0], *self.bottleneck_shape)
        out = self.decoder(h)
        size = tuple(size) if size is not None else (self.input_size,) * 3
        # The reference matches the input resolution with a nearest resize (needed for 28^3 -> 32^3).
        return F.interpolate(out, size=size, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), size=x.shape[2:])

    def stage_shapes(self, x: torch.Tensor) -> dict:
        """Output shape of every encoder/decoder stage, the latent and the output (for checks)."""
        out = {}
        h = x
        for i, m in enumerate(self.encoder):
            h = m(h)
            out[f"ae_encoder_{i}"] = tuple(h.shape)
        z = self.fc(torch.flatten(h, 1))
        h = self.decoder_input(z).reshape(z.shape[0], *self.bottleneck_shape)
        for i, m in enumerate(self.decoder):
            h = m(h)
            out[f"ae_decoder_{i}"] = tuple(h.shape)
        out["ae_z"] = tuple(z.shape)
        out["ae_out"] = tuple(self.forward(x).shape)
        return out
