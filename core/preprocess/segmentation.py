"""A MONAI 3-D UNet segmenter, so a CT or MRI can become a mask and then a mesh.

The inner-ear paper segmented the cochlea with a MONAI 3-D UNet trained on normal anatomies
and meshed the largest component of its output. ``UNetSegmenter`` is that step as a
scikit-learn style estimator: ``fit(volumes, masks)`` on (volume, label map) pairs,
``predict(volumes)`` label maps on the volumes' own grids. Several structures are segmented at
once by listing their label ids (``labels=(5, 1)``: liver and spleen in TotalSegmentator ids);
predictions use the same ids.

CPU-friendly by design: each volume can be resized to ``input_size`` first, training draws
random ``patch_size`` patches (most centred on the foreground), and inference slides the same
window over the volume. ``steps()`` yields one ``core.jobs.Progress`` per optimisation step and
resumes exactly (patch draws depend only on (seed, epoch, step)), so it runs as a background
``core.jobs.Job`` like any method.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..jobs import Progress, RateMeter
from ..methods.base import Method
from .intensity import percentile_normalise, zscore
from .resize import crop_box, resize

__all__ = ["UNetSegmenter"]


class UNetSegmenter(Method):
    name = "unet-segmenter"
    input_kind = "volume"
    param_choices = {"normalise": ("percentile", "zscore", "none")}
    param_help = {
        "labels": "label ids to segment (others count as background); predictions use these ids",
        "input_size": "resize every volume to this (z, y, x) size first; () keeps the native grid",
        "patch_size": "training patch and sliding-window size; each side divisible by 2^(levels-1)",
        "channels": "UNet feature channels per level (each level halves the resolution)",
        "foreground_fraction": "share of training patches centred on a foreground voxel",
        "normalise": "per-volume intensity normalisation: 5-95 percentile, z-score or none",
    }

    def __init__(self, *, labels: tuple = (1,), input_size: tuple = (), patch_size: tuple = (32, 64, 64),
                 channels: tuple = (8, 16, 32, 64), num_res_units: int = 1, epochs: int = 50,
                 patches_per_volume: int = 4, batch_size: int = 2, lr: float = 1e-3,
                 foreground_fraction: float = 0.7, normalise: str = "percentile", seed: int = 0,
                 device: str = "auto"):
        self.labels = labels
        self.input_size = input_size
        self.patch_size = patch_size
        self.channels = channels
        self.num_res_units = num_res_units
        self.epochs = epochs
        self.patches_per_volume = patches_per_volume
        self.batch_size = batch_size
        self.lr = lr
        self.foreground_fraction = foreground_fraction
        self.normalise = normalise
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        labels = [int(v) for v in self.labels]
        if not labels or any(v <= 0 for v in labels) or len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct positive label ids, got {self.labels!r}")
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must have 3 sizes (z, y, x), got {self.patch_size!r}")
        if self.input_size and len(self.input_size) != 3:
            raise ValueError(f"input_size must be () or 3 sizes (z, y, x), got {self.input_size!r}")
        if len(self.channels) < 2:
            raise ValueError("channels needs at least 2 levels")
        factor = 2 ** (len(self.channels) - 1)
        if any(int(p) % factor for p in self.patch_size):
            raise ValueError(f"patch_size {tuple(self.patch_size)} must be divisible by {factor} "
                             f"({len(self.channels)} UNet levels)")
        if self.normalise not in self.param_choices["normalise"]:
            raise ValueError(f"normalise must be one of {self.param_choices['normalise']}, "
                             f"got {self.normalise!r}")

    @property
    def n_classes(self) -> int:
        return len(self.labels) + 1  # background first

    def _build(self):
        import torch
        from monai.networks.nets import UNet

        from ..device import pick_device

        self._check_params()
        self.device_ = pick_device(self.device)
        torch.manual_seed(int(self.seed))
        self.model_ = UNet(spatial_dims=3, in_channels=1, out_channels=self.n_classes,
                           channels=tuple(int(c) for c in self.channels),
                           strides=(2,) * (len(self.channels) - 1),
                           num_res_units=int(self.num_res_units)).to(self.device_)
        self.optimizer_ = torch.optim.Adam(self.model_.parameters(), lr=float(self.lr))
        self.epoch_, self.step_ = 0, 0
        self.loss_history_ = []

    def _prepare_volume(self, volume) -> np.ndarray:
        v = np.asarray(volume)
        if v.ndim != 3:
            raise ValueError(f"expected a 3-D volume (z, y, x), got shape {v.shape}")
        v = v.astype(np.float32)
        if self.normalise == "percentile":
            v = percentile_normalise(v)
        elif self.normalise == "zscore":
            v = zscore(v)
        if self.input_size:
            v = resize(v, self.input_size)
        return v

    def _prepare_mask(self, mask, shape) -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != shape:
            raise ValueError(f"mask shape {m.shape} differs from its volume's shape {shape}")
        classes = np.zeros(m.shape, np.uint8)
        for k, lab in enumerate(self.labels, start=1):
            classes[m == int(lab)] = k
        if self.input_size:
            classes = resize(classes, self.input_size, is_label=True)
        return classes

    def _split(self, data):
        if isinstance(data, tuple) and len(data) == 2:
            volumes, masks = data
        else:
            raise TypeError("data must be a (volumes, masks) pair")
        if isinstance(volumes, np.ndarray) and volumes.ndim == 3:
            volumes, masks = [volumes], [masks]
        volumes, masks = list(volumes), list(masks)
        if len(volumes) != len(masks) or not volumes:
            raise ValueError(f"need as many masks as volumes (got {len(volumes)} and {len(masks)})")
        return volumes, masks

    # ------------------------------------------------------------------ training
    def _draw_patch(self, rng, vol, lab):
        size = np.asarray(self.patch_size, dtype=int)
        fg = np.flatnonzero(lab)
        if len(fg) and rng.random() < self.foreground_fraction:
            centre = np.array(np.unravel_index(fg[rng.integers(len(fg))], lab.shape))
        else:
            centre = np.array([rng.integers(n) for n in lab.shape])
        start = centre - size // 2
        # Keep the patch inside the volume where the volume is large enough; pad otherwise.
        start = np.where(np.array(lab.shape) >= size,
                         np.clip(start, 0, np.array(lab.shape) - size), start)
        stop = start + size
        return (crop_box(vol, start, stop, pad_value=float(vol.min())),
                crop_box(lab, start, stop, pad_value=0))

    def steps(self, data, *, resume: dict | None = None):
        import torch
        from monai.losses import DiceCELoss

        from ..device import autocast

        volumes, masks = self._split(data)
        if resume is not None:
            self.load_state_dict(resume)
        else:
            self._build()
        vols = [self._prepare_volume(v) for v in volumes]
        labs = [self._prepare_mask(m, np.asarray(v).shape) for m, v in zip(masks, volumes)]
        n = len(vols)
        per_epoch = n * int(self.patches_per_volume)
        steps_per_epoch = max(1, math.ceil(per_epoch / int(self.batch_size)))
        total = int(self.epochs) * steps_per_epoch
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        meter = RateMeter(total_steps=max(1, total - (self.epoch_ * steps_per_epoch + self.step_)))
        self.model_.train()
        while self.epoch_ < int(self.epochs):
            order = np.random.default_rng([int(self.seed), self.epoch_]).permutation(
                np.repeat(np.arange(n), int(self.patches_per_volume)))
            while self.step_ < steps_per_epoch:
                e, s = self.epoch_, self.step_
                rng = np.random.default_rng([int(self.seed), e, s, 1])
                idx = order[s * int(self.batch_size): (s + 1) * int(self.batch_size)]
                pairs = [self._draw_patch(rng, vols[i], labs[i]) for i in idx]
                x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]).to(self.device_)
                y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.int64))
                y = y.to(self.device_)
                self.optimizer_.zero_grad(set_to_none=True)
                with autocast(self.device_):
                    logits = self.model_(x)
                loss = loss_fn(logits.float(), y)
                loss.backward()
                self.optimizer_.step()
                value = float(loss.detach())
                self.loss_history_.append(value)
                self.step_ += 1
                end = self.step_ == steps_per_epoch
                if end:
                    self.epoch_, self.step_ = self.epoch_ + 1, 0
                rate, eta = meter.update(len(idx))
                yield Progress(epoch=e, step=s + 1, global_step=e * steps_per_epoch + s + 1,
                               n_epochs=int(self.epochs), steps_per_epoch=steps_per_epoch,
                               losses={"dice_ce": value}, samples_per_s=rate, eta_s=eta,
                               epoch_end=end)
                if end:
                    break

    def fit(self, volumes, masks=None, *, resume: dict | None = None) -> "UNetSegmenter":
        data = volumes if masks is None else (volumes, masks)
        for _ in self.steps(data, resume=resume):
            pass
        return self

    # ------------------------------------------------------------------ inference
    def predict_proba(self, volume) -> np.ndarray:
        """Class probabilities (C x z x y x x, background first) on the volume's own grid."""
        import torch
        import torch.nn.functional as F
        from monai.inferers import sliding_window_inference

        from ..device import autocast

        if not hasattr(self, "model_"):
            raise RuntimeError("UNetSegmenter is not fitted: call fit() or load_state_dict() first")
        shape = np.asarray(volume).shape
        v = self._prepare_volume(volume)
        x = torch.from_numpy(v[None, None]).to(self.device_)
        self.model_.eval()
        with torch.no_grad(), autocast(self.device_):
            logits = sliding_window_inference(x, tuple(int(p) for p in self.patch_size),
                                              sw_batch_size=int(self.batch_size),
                                              predictor=self.model_, overlap=0.25, mode="gaussian")
        logits = logits.float()
        if tuple(logits.shape[2:]) != shape:
            logits = F.interpolate(logits, size=shape, mode="trilinear", align_corners=False)
        return torch.softmax(logits, dim=1)[0].cpu().numpy()

    def predict(self, volumes):
        """Label maps (original label ids, 0 = background) for one volume or a list of them."""
        single = isinstance(volumes, np.ndarray) and volumes.ndim == 3
        ids = np.array([0] + [int(v) for v in self.labels])
        dtype = np.uint8 if ids.max() < 256 else np.uint16
        out = [ids[self.predict_proba(v).argmax(0)].astype(dtype)
               for v in ([volumes] if single else volumes)]
        return out[0] if single else out

    def transform(self, data):
        """For the method interface: volumes -> predicted label maps."""
        return self.predict(data)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        if not hasattr(self, "model_"):
            raise RuntimeError("UNetSegmenter has no state before fit()")
        return {"params": self.get_params(), "model": self.model_.state_dict(),
                "optimizer": self.optimizer_.state_dict(), "epoch": self.epoch_, "step": self.step_,
                "loss_history": list(self.loss_history_)}

    def load_state_dict(self, state: dict) -> "UNetSegmenter":
        if "params" in state:
            self.set_params(**state["params"])
        self._build()
        self.model_.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer_.load_state_dict(state["optimizer"])
        self.epoch_, self.step_ = int(state.get("epoch", 0)), int(state.get("step", 0))
        self.loss_history_ = list(state.get("loss_history", []))
        return self
