"""Self-supervised baselines on the 3D ResUNet-18 encoder: SimCLR, BYOL, SimSiam, masked volumes.

Losses are pure functions at the top; ``VolumeSSL`` below is the shared training loop (volume
scaling, epoch permutations from (seed, epoch) so resume is exact, 3D augmentations seeded from
(seed, epoch, step), Adam or the reference's LARS with warm-up + cosine); one small class per
method adds its heads and loss. Every method keeps the same ``ResUNet3D`` so
``AnomalyFinetune`` (core.methods.residual_ssl) fine-tunes any of them the same way.

The reference's "BYOL" (and its "SimSiam") has no predictor and no momentum encoder: the target
is the online network itself under no_grad. ``BYOL(momentum=False, predictor=False)`` is that;
the default ``BYOL()`` is the true BYOL (EMA target + predictor).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..jobs import Progress, RateMeter
from ..jobs import distributed as dist
from .base import Method


# ============================================================================ losses (pure)
def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SimCLR NT-Xent: 2N rows, positives i <-> i+N, self-similarity excluded; CE summed / 2N.

    Inputs are the projections; they are L2-normalised here (the reference normalises before
    its loss).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], 0), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target, reduction="sum") / (2 * n)


def byol_pair_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample 2 - 2 cos(p, z) with ``z`` treated as a constant target."""
    return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z.detach(), dim=-1)).sum(-1)


def byol_loss(p1, p2, z1=None, z2=None) -> torch.Tensor:
    """Symmetrised BYOL loss, mean over the batch: (2-2cos(p1, sg z2)) + (2-2cos(p2, sg z1)).

    With ``z1``/``z2`` omitted the targets are the other view's own outputs (the reference's
    no-momentum, no-predictor "BYOL").
    """
    z1 = p1 if z1 is None else z1
    z2 = p2 if z2 is None else z2
    return (byol_pair_loss(p1, z2) + byol_pair_loss(p2, z1)).mean()


def simsiam_loss(p1, p2, z1, z2) -> torch.Tensor:
    """SimSiam: mean of negative cosines D(p1, sg z2)/2 + D(p2, sg z1)/2."""
    d = lambda p, z: -(F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(1).mean()  # noqa: E731
    return d(p1, z2) / 2 + d(p2, z1) / 2


def patch_mask(shape, patch: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean voxel mask (N x 1 x D x H x W), True where a patch is hidden; ``ratio`` of the
    patches of each sample, chosen at random."""
    n, _, *size = shape
    grid = [math.ceil(s / patch) for s in size]
    n_patches = int(np.prod(grid))
    n_hide = max(1, int(round(ratio * n_patches)))
    scores = torch.rand(n, n_patches, generator=generator)
    hide = torch.zeros(n, n_patches, dtype=torch.bool)
    hide.scatter_(1, scores.argsort(1)[:, :n_hide], True)
    m = hide.reshape(n, 1, *grid).float()
    for axis in range(3):
        m = m.repeat_interleave(patch, dim=2 + axis)
    return m[:, :, :size[0], :size[1], :size[2]].bool()


def masked_reconstruction_loss(pred, target, mask) -> torch.Tensor:
    """MSE over the hidden voxels only (SparK-like: visible voxels are not scored)."""
    mask = mask.to(pred.dtype)
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1)


# ============================================================================ optimiser
class LARS(torch.optim.Optimizer):
    """LARS as in the reference (``models/ResUNet_3D.py``): local_lr = eta*||w|| / (||g|| + wd*||w||),
    1 where either norm is 0; weight decay and momentum then applied to the step."""

    def __init__(self, params, lr: float, momentum: float = 0.0, eta: float = 1e-3, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, epsilon: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, eta=eta, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, epsilon=epsilon))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = torch.norm(p), torch.norm(p.grad)
                local_lr = (g["eta"] * w_norm / (g_norm + g["weight_decay"] * w_norm + g["epsilon"])
                            if w_norm * g_norm > 0 else torch.tensor(1.0))
                d_p = p.grad
                if g["weight_decay"]:
                    d_p = d_p.add(p, alpha=g["weight_decay"])
                if g["momentum"]:
                    st = self.state[p]
                    if "momentum_buffer" not in st:
                        buf = st["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = st["momentum_buffer"]
                        buf.mul_(g["momentum"]).add_(d_p, alpha=1 - g["dampening"])
                    d_p = d_p.add(buf, alpha=g["momentum"]) if g["nesterov"] else buf
                p.add_(d_p * (-(local_lr * g["lr"])))
        return loss


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The reference's LambdaLR factor: linear warm-up, then cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ============================================================================ data helpers
def volumes_to_tensor(x: np.ndarray) -> torch.Tensor:
    """N x D x H x W (or N x 1 x D x H x W) -> float32 N x 1 x D x H x W in [0, 1].

    uint8 / {0,255} masks are divided by 255, booleans cast; other ranges are min-max scaled per
    volume (CT/MRI intensities), since every network here expects [0, 1] inputs.
    """
    x = np.asarray(x)
    if x.ndim == 4:
        x = x[:, None]
    if x.ndim != 5:
        raise ValueError(f"expected volumes N x D x H x W, got an array of shape {x.shape}")
    if x.dtype == np.bool_:
        out = x.astype(np.float32)
    elif x.dtype == np.uint8:
        out = x.astype(np.float32) / 255.0
    else:
        out = x.astype(np.float32)
        lo = out.reshape(len(out), -1).min(1)
        hi = out.reshape(len(out), -1).max(1)
        if (lo < 0).any() or (hi > 1).any():
            span = np.where(hi > lo, hi - lo, 1.0)
            out = (out - lo[:, None, None, None, None]) / span[:, None, None, None, None]
    return torch.from_numpy(np.ascontiguousarray(out))


def binary_targets(data, normal_label: str = "") -> np.ndarray:
    """0 = normal, 1 = anomalous, -1 = unlabelled, from a SampleSet's labels.

    The normal class is ``normal_label`` when given, else the first label named like
    normal/healthy/vessel (VesselMNIST3D: vessel = normal, aneurysm = anomaly), else label 0.
    """
    if data.y is None or not len(data.label_names):
        return np.full(len(data), -1)
    names = [n.lower() for n in data.label_names]
    if normal_label:
        if normal_label.lower() not in names:
            raise ValueError(f"normal_label {normal_label!r} is not one of the labels {data.label_names}")
        k = names.index(normal_label.lower())
    else:
        k = next((names.index(c) for c in ("normal", "healthy", "vessel", "0") if c in names), 0)
    out = np.where(data.y[:, k] > 0, 0, 1)
    out[~data.labelled] = -1
    return out


def _gen(*keys) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0]))
    return g


def augment_volumes(x: torch.Tensor, generator: torch.Generator, *, scale=(0.7, 1.0), max_shift=0.1,
                    flip=True, noise=0.05) -> torch.Tensor:
    """Random resized crop + shift, axis flips and Gaussian intensity noise, per sample, on one
    affine grid (works on CPU tensors; move the result to the device)."""
    n = x.shape[0]
    s = torch.empty(n, 3).uniform_(*scale, generator=generator)
    sign = torch.where(torch.rand(n, 3, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n, 3)
    theta = torch.zeros(n, 3, 4)
    theta[:, [0, 1, 2], [0, 1, 2]] = s * sign
    theta[:, :, 3] = (torch.rand(n, 3, generator=generator) * 2 - 1) * (1 - s + max_shift)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if noise:
        out = out + noise * torch.randn(out.shape, generator=generator)
    return out


def flip_pair(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator):
    """The same random axis flips applied to a volume and its target."""
    for axis in (2, 3, 4):
        if torch.rand(1, generator=generator).item() < 0.5:
            a, b = a.flip(axis), b.flip(axis)
    return a, b


def mlp(dims, bn=True, last_bn=False) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        last = i == len(dims) - 2
        if bn and (not last or last_bn):
            layers.append(nn.BatchNorm1d(b))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ============================================================================ shared training loop
class VolumeSSL(Method):
    """Base class: pretrain a ``ResUNet3D`` on the volumes of ``splits`` (labels ignored).

    Subclasses implement ``_build_heads()`` and ``_loss(x, generator) -> (loss, {name: value})``
    and may override ``_after_step()`` (e.g. the EMA update).
    """

    input_kind = "volume"
    param_choices = {"optimizer": ("adam", "lars")}
    param_help = {
        "epochs": "passes over the pretraining volumes",
        "batch_size": "volumes per step",
        "lr": "learning rate (Adam), or LARS base rate",
        "optimizer": "adam, or lars with linear warm-up + cosine (the reference's SSL optimiser)",
        "warmup_epochs": "LARS warm-up epochs",
        "widen_factor": "ResUNet width multiplier (1.0 = ResUNet-18 of the paper; smaller for quick CPU runs)",
        "splits": "comma-separated splits whose volumes pretrain the network (labels are not used)",
        "max_samples": "use at most this many pretraining volumes (0 = all), chosen with the seed",
        "seed": "random seed (weights, batches, augmentations)",
        "device": "auto, cpu or cuda",
    }

    def __init__(self, *, epochs=20, batch_size=8, lr=1e-3, optimizer="adam", warmup_epochs=2,
                 weight_decay=1e-6, widen_factor=1.0, splits="train", max_samples=0, seed=0, device="auto"):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.warmup_epochs = warmup_epochs
        self.weight_decay = weight_decay
        self.widen_factor = widen_factor
        self.splits = splits
        self.max_samples = max_samples
        self.seed = seed
        self.device = device

    # -------------------------------------------------------------- hooks
    def _build_heads(self) -> None:
        pass

    def _loss(self, x: torch.Tensor, gen: torch.Generator):
        raise NotImplementedError

    def _after_step(self, global_step: int, total_steps: int) -> None:
        pass

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _modules(self) -> dict:
        """Trainable modules by name (state-dict keys)."""
        return {"model": self.model_}

    def _rank_modules(self) -> list:
        """Every module a step runs (trainable or not), made ready for data-parallel steps."""
        return list(self._modules().values())

    # -------------------------------------------------------------- helpers
    def _select(self, data) -> np.ndarray:
        splits = [s.strip() for s in str(self.splits).split(",") if s.strip()]
        idx = np.flatnonzero(np.isin(data.split, splits)) if splits else np.arange(len(data))
        if not len(idx) and (data.split == "").all():
            idx = np.arange(len(data))  # no split information: use everything
        if self.max_samples and len(idx) > self.max_samples:
            idx = np.sort(np.random.default_rng([self.seed, 7]).choice(idx, self.max_samples, replace=False))
        if len(idx) < 2:
            raise ValueError(f"{type(self).__name__}: need at least 2 volumes in splits {self.splits!r}, "
                             f"found {len(idx)}")
        return idx

    def _make_optimizer(self, params):
        if self.optimizer == "lars":
            return LARS(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        raise ValueError(f"optimizer must be 'adam' or 'lars', not {self.optimizer!r}")

    def _set_lr(self, global_step: int, steps_per_epoch: int) -> None:
        if self.optimizer != "lars":
            return
        f = warmup_cosine_factor(global_step, self.warmup_epochs * steps_per_epoch, self.epochs * steps_per_epoch)
        for g in self.opt_.param_groups:
            g["lr"] = self.lr * f

    def _init(self, shape) -> None:
        from ..device import pick_device, seed_everything
        from ..models.resunet3d import resunet18

        seed_everything(self.seed)
        self.device_ = pick_device(self.device)
        self.input_shape_ = tuple(int(s) for s in shape)
        self.model_ = resunet18(widen_factor=self.widen_factor).to(self.device_)
        self._build_heads()
        params = [p for m in self._modules().values() for p in m.parameters()]
        self.opt_ = self._make_optimizer(params)
        self.epoch_, self.step_ = 0, 0

    # -------------------------------------------------------------- the contract
    def steps(self, data, *, resume=None):
        from ..device import autocast

        x_all = volumes_to_tensor(data.x)
        idx = self._select(data)
        self._init(x_all.shape[2:])
        if resume is not None:
            self.load_state_dict(resume)
        # torchrun: global-batch BatchNorm, rank 0's weights. Each rank forwards its rows of the
        # global batch (augmented whole, as on one process) and computes the loss of the whole
        # batch from the gathered outputs (``distributed.local_batch`` / ``global_batch``)
        dist.prepare_all(*self._rank_modules())
        n = len(idx)
        bs = min(self.batch_size, n)
        spe = max(1, n // bs)  # drop the ragged last batch: batch norm needs > 1 sample
        meter = RateMeter((self.epochs - self.epoch_) * spe - self.step_)
        for epoch in range(self.epoch_, self.epochs):
            perm = np.random.default_rng([self.seed, epoch]).permutation(idx)
            for step in range(self.step_ if epoch == self.epoch_ else 0, spe):
                for m in self._modules().values():
                    m.train()
                gstep = epoch * spe + step
                self._set_lr(gstep, spe)
                gen = _gen(self.seed, epoch, step)
                xb = x_all[perm[step * bs:(step + 1) * bs]]
                with autocast(self.device_):
                    loss, parts = self._loss(xb, gen)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                dist.sync_gradients(self.opt_)
                self.opt_.step()
                self._after_step(gstep, self.epochs * spe)
                self.epoch_, self.step_ = (epoch, step + 1) if step + 1 < spe else (epoch + 1, 0)
                rate, eta = meter.update(len(xb))
                yield Progress(epoch=epoch, step=step + 1, global_step=gstep + 1, n_epochs=self.epochs,
                               steps_per_epoch=spe, losses={"loss": float(loss.detach()), **parts},
                               samples_per_s=rate, eta_s=eta, epoch_end=step + 1 == spe)
        self.epoch_, self.step_ = self.epochs, 0

    @torch.no_grad()
    def transform(self, data, batch_size: int = 32) -> np.ndarray:
        """Average-pooled encoder features (N x 512·widen_factor)."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not trained: call fit or load a checkpoint")
        self.model_.eval()
        x = volumes_to_tensor(data.x)
        out = [self.model_.features(x[i:i + batch_size].to(self.device_)).float().cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    def state_dict(self) -> dict:
        return {"params": self.get_params(), "method": self.name, "input_shape": self.input_shape_,
                "modules": {k: m.state_dict() for k, m in self._modules().items()},
                "encoder": self.model_.encoder_state_dict(), "optimizer": self.opt_.state_dict(),
                "epoch": self.epoch_, "step": self.step_, "torch_rng": torch.get_rng_state(),
                **self._extra_state()}

    def load_state_dict(self, state: dict):
        if not hasattr(self, "model_"):
            self._init(state["input_shape"])
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        self.opt_.load_state_dict(state["optimizer"])
        self.epoch_, self.step_ = int(state["epoch"]), int(state["step"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self._load_extra_state(state)
        return self


# ============================================================================ the methods
class SimCLR(VolumeSSL):
    """SimCLR: two augmented views, projector 512-512-128, NT-Xent (temperature 0.07)."""

    name = "simclr"
    param_help = {**VolumeSSL.param_help, "temperature": "NT-Xent temperature (reference: 0.07)",
                  "proj_dim": "projection size"}

    def __init__(self, *, temperature=0.07, proj_dim=128, epochs=20, batch_size=8, lr=1e-3, optimizer="adam",
                 warmup_epochs=2, weight_decay=1e-6, widen_factor=1.0, splits="train", max_samples=0, seed=0,
                 device="auto"):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         warmup_epochs=warmup_epochs, weight_decay=weight_decay, widen_factor=widen_factor,
                         splits=splits, max_samples=max_samples, seed=seed, device=device)
        self.temperature = temperature
        self.proj_dim = proj_dim

    def _build_heads(self):
        d = self.model_.feature_dim
        self.projector_ = mlp([d, d, self.proj_dim], bn=False).to(self.device_)

    def _modules(self):
        return {"model": self.model_, "projector": self.projector_}

    def _loss(self, x, gen):
        v1, v2 = dist.local_batch(augment_volumes(x, gen), augment_volumes(x, gen))
        z1 = self.projector_(self.model_.features(v1.to(self.device_)))
        z2 = self.projector_(self.model_.features(v2.to(self.device_)))
        z1, z2 = dist.global_batch(z1, z2)  # the negatives are the whole global batch
        return nt_xent_loss(z1.float(), z2.float(), self.temperature), {}


class BYOL(VolumeSSL):
    """BYOL. Default: EMA target network (``tau``) and predictor (Grill et al.).
    ``momentum=False, predictor=False``: the reference's variant (target = online, no_grad)."""

    name = "byol"
    param_help = {**VolumeSSL.param_help, "momentum": "use an EMA target network",
                  "predictor": "use the predictor MLP on the online branch", "tau": "EMA base rate",
                  "proj_dim": "projection size", "hidden_dim": "MLP hidden size"}

    def __init__(self, *, momentum=True, predictor=True, tau=0.99, proj_dim=128, hidden_dim=512, epochs=20,
                 batch_size=8, lr=1e-3, optimizer="adam", warmup_epochs=2, weight_decay=1e-6, widen_factor=1.0,
                 splits="train", max_samples=0, seed=0, device="auto"):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         warmup_epochs=warmup_epochs, weight_decay=weight_decay, widen_factor=widen_factor,
                         splits=splits, max_samples=max_samples, seed=seed, device=device)
        self.momentum = momentum
        self.predictor = predictor
        self.tau = tau
        self.proj_dim = proj_dim
        self.hidden_dim = hidden_dim

    def _build_heads(self):
        import copy

        d = self.model_.feature_dim
        self.projector_ = mlp([d, self.hidden_dim, self.proj_dim]).to(self.device_)
        self.predictor_ = (mlp([self.proj_dim, self.hidden_dim, self.proj_dim]).to(self.device_)
                           if self.predictor else None)
        if self.momentum:
            self.target_model_ = copy.deepcopy(self.model_).requires_grad_(False)
            self.target_projector_ = copy.deepcopy(self.projector_).requires_grad_(False)

    def _modules(self):
        mods = {"model": self.model_, "projector": self.projector_}
        if self.predictor_ is not None:
            mods["predictor"] = self.predictor_
        return mods

    def _extra_state(self):
        if not self.momentum:
            return {}
        return {"target": {"model": self.target_model_.state_dict(),
                           "projector": self.target_projector_.state_dict()}}

    def _load_extra_state(self, state):
        if self.momentum:
            self.target_model_.load_state_dict(state["target"]["model"])
            self.target_projector_.load_state_dict(state["target"]["projector"])

    def _rank_modules(self):
        targets = [self.target_model_, self.target_projector_] if self.momentum else []
        return list(self._modules().values()) + targets

    def _loss(self, x, gen):
        v1, v2 = dist.local_batch(augment_volumes(x, gen), augment_volumes(x, gen))
        v1, v2 = v1.to(self.device_), v2.to(self.device_)
        z1 = self.projector_(self.model_.features(v1))
        z2 = self.projector_(self.model_.features(v2))
        p1 = self.predictor_(z1) if self.predictor_ is not None else z1
        p2 = self.predictor_(z2) if self.predictor_ is not None else z2
        if self.momentum:
            with torch.no_grad():
                self.target_model_.train()
                t1 = self.target_projector_(self.target_model_.features(v1))
                t2 = self.target_projector_(self.target_model_.features(v2))
            p1, p2, t1, t2 = dist.global_batch(p1, p2, t1, t2)
            return byol_loss(p1.float(), p2.float(), t1.float(), t2.float()), {}
        # Reference: the target is the same network's output under no_grad (detached here).
        p1, p2, z1, z2 = dist.global_batch(p1, p2, z1, z2)
        return byol_loss(p1.float(), p2.float(), z1.float(), z2.float()), {}

    @torch.no_grad()
    def _after_step(self, global_step, total_steps):
        if not self.momentum:
            return
        # Cosine schedule of the EMA rate from tau to 1 (Grill et al.).
        tau = 1 - (1 - self.tau) * (math.cos(math.pi * global_step / max(1, total_steps)) + 1) / 2
        for online, target in ((self.model_, self.target_model_), (self.projector_, self.target_projector_)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)


class SimSiam(VolumeSSL):
    """SimSiam (Chen & He): projector with BN, predictor bottleneck, stop-gradient, no negatives."""

    name = "simsiam"
    param_help = {**VolumeSSL.param_help, "proj_dim": "projection size", "pred_hidden": "predictor bottleneck"}

    def __init__(self, *, proj_dim=512, pred_hidden=128, epochs=20, batch_size=8, lr=1e-3, optimizer="adam",
                 warmup_epochs=2, weight_decay=1e-6, widen_factor=1.0, splits="train", max_samples=0, seed=0,
                 device="auto"):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         warmup_epochs=warmup_epochs, weight_decay=weight_decay, widen_factor=widen_factor,
                         splits=splits, max_samples=max_samples, seed=seed, device=device)
        self.proj_dim = proj_dim
        self.pred_hidden = pred_hidden

    def _build_heads(self):
        d = self.model_.feature_dim
        self.projector_ = mlp([d, self.proj_dim, self.proj_dim], last_bn=True).to(self.device_)
        self.predictor_ = mlp([self.proj_dim, self.pred_hidden, self.proj_dim]).to(self.device_)

    def _modules(self):
        return {"model": self.model_, "projector": self.projector_, "predictor": self.predictor_}

    def _loss(self, x, gen):
        v1, v2 = dist.local_batch(augment_volumes(x, gen), augment_volumes(x, gen))
        z1 = self.projector_(self.model_.features(v1.to(self.device_)))
        z2 = self.projector_(self.model_.features(v2.to(self.device_)))
        p1, p2 = self.predictor_(z1), self.predictor_(z2)
        p1, p2, z1, z2 = dist.global_batch(p1, p2, z1, z2)
        return simsiam_loss(p1.float(), p2.float(), z1.float(), z2.float()), {}


class MaskedVolume(VolumeSSL):
    """Masked-volume reconstruction (SparK-like): hide ``mask_ratio`` of the ``patch``^3 patches
    (zeroed at the input), reconstruct with the ResUNet decoder, score only hidden voxels."""

    name = "masked"
    param_help = {**VolumeSSL.param_help, "mask_ratio": "fraction of patches hidden (SparK: 0.6)",
                  "patch": "patch edge in voxels"}

    def __init__(self, *, mask_ratio=0.6, patch=4, epochs=20, batch_size=8, lr=1e-3, optimizer="adam",
                 warmup_epochs=2, weight_decay=1e-6, widen_factor=1.0, splits="train", max_samples=0, seed=0,
                 device="auto"):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         warmup_epochs=warmup_epochs, weight_decay=weight_decay, widen_factor=widen_factor,
                         splits=splits, max_samples=max_samples, seed=seed, device=device)
        self.mask_ratio = mask_ratio
        self.patch = patch

    def _loss(self, x, gen):
        mask = patch_mask(x.shape, self.patch, self.mask_ratio, gen)
        x, mask = x.to(self.device_), mask.to(self.device_)
        xl, ml = dist.local_batch(x, mask)
        pred = dist.global_batch(self.model_.reconstruct(xl * (~ml)))
        return masked_reconstruction_loss(pred.float(), x, mask), {}
