"""Heads that sit on a 2D trunk, and the trunk + heads networks the clustering methods train.

Every network here exposes its trunk as ``.trunk`` (a module mapping images to ``out_dim``
features), so a classifier can be initialised from a clustering run with
``Method.from_checkpoint(path).model_.trunk``.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["MLP", "ClusterNet", "FeatureClassifierNet"]


class MLP(nn.Sequential):
    """Linear-ReLU layers (DeepCluster's classifier between trunk and top layer), with dropout
    before each linear layer as in VGG's classifier. ``depth=0`` is the identity."""

    def __init__(self, in_dim: int, hidden_dim: int, depth: int = 2, dropout: float = 0.5):
        layers = []
        d = in_dim
        for _ in range(depth):
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(d, hidden_dim), nn.ReLU(inplace=True)]
            d = hidden_dim
        super().__init__(*layers)
        self.out_dim = d
        # He initialisation rather than VGG's N(0, 0.01): with 0.01 a 512-wide classifier
        # shrinks the signal ~5x per layer and a short run on small data learns nothing.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)


class ClusterNet(nn.Module):
    """A trunk and several linear cluster heads on its features (PICA: over-clustering and
    target heads). ``forward`` returns the list of logits, one tensor per head.

    ``feature_norm`` (default) standardises the trunk's features (BatchNorm without affine
    parameters, running statistics averaged evenly over the first batches) before the heads.
    A randomly initialised trunk's average-pooled ReLU features share one large positive
    component, so every image's logits point the same way and a fresh linear head sends all
    images to one cluster; the cluster-size prior can then be met with soft, near-uniform
    probabilities while every argmax stays on that cluster (what "PICA collapses to a single
    cluster in 2 epochs" was). Standardised features give a head whose argmax already spreads
    the images over the clusters at step 0."""

    def __init__(self, trunk: nn.Module, head_sizes: Sequence[int], feature_norm: bool = True):
        super().__init__()
        self.trunk = trunk
        self.head_sizes = [int(k) for k in head_sizes]
        self.norm = None
        if feature_norm:
            from .backbones2d import bn_warm_start

            self.norm = bn_warm_start(nn.BatchNorm1d(trunk.out_dim, affine=False))
        self.heads = nn.ModuleList(nn.Linear(trunk.out_dim, k) for k in self.head_sizes)

    def features(self, x):
        return self.trunk(x)

    def head_input(self, f):
        """What the heads see: the (standardised when ``feature_norm``) trunk features."""
        return f if self.norm is None else self.norm(f.float())

    def forward(self, x, heads: Sequence[int] | None = None, return_features: bool = False):
        """The logits of ``heads`` (all by default); with ``return_features`` also the trunk's
        features (what a projector on the trunk, such as PICA's instance term, takes)."""
        f = self.trunk(x)
        h = self.head_input(f)
        idx = range(len(self.heads)) if heads is None else heads
        logits = [self.heads[i](h) for i in idx]
        return (logits, f) if return_features else logits


class FeatureClassifierNet(nn.Module):
    """DeepCluster's network: trunk -> ``classifier`` (MLP) -> ``top_layer`` (linear over the
    current pseudo-labels). ``features`` are the classifier's output, what k-means clusters."""

    def __init__(self, trunk: nn.Module, hidden_dim: int = 512, depth: int = 2, dropout: float = 0.5,
                 n_classes: int = 10):
        super().__init__()
        self.trunk = trunk
        self.classifier = MLP(trunk.out_dim, hidden_dim, depth=depth, dropout=dropout)
        self.feature_dim = self.classifier.out_dim
        self.top_layer = nn.Linear(self.feature_dim, n_classes)

    def reset_top_layer(self, n_classes: int, generator=None) -> None:
        """A fresh top layer (DeepCluster re-initialises it after every clustering)."""
        import torch

        layer = nn.Linear(self.feature_dim, n_classes)
        with torch.no_grad():  # drawn on the CPU so a seeded CPU generator serves any device
            layer.weight.normal_(0, 0.01, generator=generator)
            layer.bias.zero_()
        self.top_layer = layer.to(self.top_layer.weight.device)

    def features(self, x):
        # DeepCluster clusters the classifier's output before its last ReLU
        h = self.trunk(x)
        layers = list(self.classifier)
        for m in layers[:-1] if layers else []:
            h = m(h)
        return h

    def forward(self, x):
        h = self.features(x)
        if len(self.classifier):
            h = self.classifier[-1](h)
        return self.top_layer(h)
