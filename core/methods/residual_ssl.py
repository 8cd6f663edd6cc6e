"""Residual self-supervision for 3D anomaly classification (Bhattacharya et al., paranasal sinuses).

Pipeline (one ``ResidualSSL`` run, three stages in one step generator):
1. autoencoder: the paper's 3D CAE (core.models.cae3d) learns to reconstruct NORMAL volumes of the
   training split only (L1 loss). Anomalous and unlabelled training volumes are never shown to it.
2. residuals: for every volume, |x - AE(x)| rescaled to [0, 1] at the 1st/99th percentiles, then a
   3D median filter (k = 5). Stored in the project as ``residuals/run-XXXX`` (float16, with ids)
   for the app's overlay; the pretext target is that map rescaled again (as the reference loader).
3. pretext: a 3D ResUNet-18 (core.models.resunet3d) learns to predict the residual from the
   volume (BCE with logits by default; L1/L2 options) on the pretraining split (labels ignored).
The autoencoder stage lives inside ``ResidualSSL`` (not a separate method) because its only job is
to make the pretext targets; its weights are in the checkpoint (``ae``) for reuse.

``AnomalyFinetune`` (finetuner "residual-ssl") then trains the pretext encoder + average pool +
512-256-2 head on a stratified label fraction with class-weighted cross-entropy and early stopping
on the validation loss; the decision threshold is the F1-best point of the validation PR curve and
test AUPRC/AUROC/precision/recall/F1 are reported. It starts from any checkpoint of this module or
of core.methods.ssl_baselines (same encoder), or from scratch (supervised baseline).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

from ..jobs import Progress, RateMeter
from .base import Method
from ..jobs import distributed as dist
from .ssl_baselines import VolumeSSL, _gen, augment_volumes, binary_targets, flip_pair, volumes_to_tensor


# ============================================================================ losses / residuals (pure)
def ae_l1_loss(recon: torch.Tensor, target: torch.Tensor, strategy: str = "mean") -> dict:
    """The reference's ``L1_AE``: ``recon_error`` (L1, what the AE trains on), ``recon_error_L2``
    (MSE) and ``combined_loss`` (their sum). strategy 'mean': voxel means; 'sum': sums / batch."""
    if strategy == "mean":
        l1 = F.l1_loss(recon, target)
        l2 = F.mse_loss(recon, target)
    elif strategy == "sum":
        l1 = F.l1_loss(recon, target, reduction="sum") / recon.shape[0]
        l2 = F.mse_loss(recon, target, reduction="sum") / recon.shape[0]
    else:
        raise ValueError(f"strategy must be 'mean' or 'sum', not {strategy!r}")
    return {"recon_error": l1, "recon_error_L2": l2, "combined_loss": l1 + l2}


def residual_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Pretext loss between the ResUNet's output and the residual target.
    'ce': BCE with logits (reference default); 'l1'/'l2' on the raw output."""
    if kind == "ce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "l1":
        return F.l1_loss(logits, target)
    if kind == "l2":
        return F.mse_loss(logits, target)
    raise ValueError(f"loss must be 'ce', 'l1' or 'l2', not {kind!r}")


def rescale_percentiles(volume: np.ndarray, percentiles=(1, 99)) -> np.ndarray:
    """torchio ``RescaleIntensity((0, 1), percentiles)``: clip to the percentiles, then min-max to
    [0, 1]. A constant volume is returned unchanged (torchio warns and does the same)."""
    a = np.array(volume, dtype=np.float32, copy=True)
    lo, hi = np.percentile(a, percentiles)
    np.clip(a, lo, hi, out=a)
    lo, hi = a.min(), a.max()
    if hi - lo == 0:
        return a
    return ((a - lo) / (hi - lo)).astype(np.float32)


def residual_map(original: np.ndarray, reconstruction: np.ndarray, median_kernel: int = 5) -> np.ndarray:
    """|original - reconstruction| rescaled at the 1st/99th percentiles, then a k^3 median filter
    (k = 0 or 1: none). Reference: ``utils_eval._save_predicted_volume`` MF_k."""
    from scipy.ndimage import median_filter

    r = rescale_percentiles(np.abs(np.asarray(original, np.float32) - np.asarray(reconstruction, np.float32)))
    if median_kernel and median_kernel > 1:
        r = median_filter(r, size=int(median_kernel))
    return r.astype(np.float32)


def pretext_target(residual: np.ndarray) -> np.ndarray:
    """What the reference's SSL data module feeds as target: the stored residual rescaled again."""
    return rescale_percentiles(residual)


# ============================================================================ pretext method
class ResidualSSL(VolumeSSL):
    """Autoencoder on normal training volumes -> residual maps -> ResUNet-18 learns the residuals."""

    name = "residual-ssl"
    param_choices = {**VolumeSSL.param_choices, "loss": ("ce", "l1", "l2")}
    param_help = {**VolumeSSL.param_help,
                  "ae_epochs": "autoencoder epochs (on normal training volumes only)",
                  "ae_lr": "autoencoder learning rate (Adam)",
                  "median_kernel": "median filter size applied to the residual (0 = none; paper: 5)",
                  "loss": "pretext loss: ce (BCE with logits, paper), l1 or l2",
                  "normal_label": "label of the normal class (default: normal/healthy/vessel, else the first)"}

    def __init__(self, *, ae_epochs=20, ae_lr=1e-3, median_kernel=5, loss="ce", normal_label="", epochs=20,
                 batch_size=8, lr=1e-3, optimizer="adam", warmup_epochs=2, weight_decay=1e-6, widen_factor=1.0,
                 splits="train", max_samples=0, seed=0, device="auto"):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                         warmup_epochs=warmup_epochs, weight_decay=weight_decay, widen_factor=widen_factor,
                         splits=splits, max_samples=max_samples, seed=seed, device=device)
        self.ae_epochs = ae_epochs
        self.ae_lr = ae_lr
        self.median_kernel = median_kernel
        self.loss = loss
        self.normal_label = normal_label

    # -------------------------------------------------------------- project glue
    def load_data(self, project, dataset=None):
        from ..dataset import from_project

        return from_project(project, kind="volume", dataset=dataset)

    def save_residuals(self, project, run_id: int) -> str:
        """Write ``residuals/run-XXXX`` (float16 maps with ids) and return its name."""
        from ..project.accessors import residuals_key

        name = residuals_key(run_id)
        project.arrays.save(name, self.residuals_.astype(np.float16), ids=self.residual_ids_,
                            median_kernel=self.median_kernel)
        self.residual_array_ = name
        return name

    def save_outputs(self, project, run_id: int) -> list[str]:
        """Called by ``core.pipeline`` once the run has finished: the maps for the app's overlay."""
        if getattr(self, "residuals_", None) is None:
            return []
        return [f"residual maps: {self.save_residuals(project, run_id)}"]

    # -------------------------------------------------------------- parts
    def _init(self, shape):
        from ..models.cae3d import CAE3D

        if len(set(shape)) != 1:
            raise ValueError(f"residual-ssl needs cubic volumes (the paper's CAE), got {tuple(shape)}")
        super()._init(shape)
        torch.manual_seed(self.seed + 1)
        self.ae_ = CAE3D(input_size=int(shape[0])).to(self.device_)
        self.ae_opt_ = torch.optim.Adam(self.ae_.parameters(), lr=self.ae_lr)
        self.stage_ = "ae"
        self.ae_epoch_, self.ae_step_ = 0, 0

    def _extra_state(self):
        return {"stage": self.stage_, "ae": self.ae_.state_dict(), "ae_optimizer": self.ae_opt_.state_dict(),
                "ae_epoch": self.ae_epoch_, "ae_step": self.ae_step_}

    def _load_extra_state(self, state):
        self.ae_.load_state_dict(state["ae"])
        self.ae_opt_.load_state_dict(state["ae_optimizer"])
        self.stage_ = state["stage"]
        self.ae_epoch_, self.ae_step_ = int(state["ae_epoch"]), int(state["ae_step"])

    def ae_training_indices(self, data) -> np.ndarray:
        """Normal volumes of the training split: the only ones the autoencoder ever trains on."""
        y = binary_targets(data, self.normal_label)
        train = data.split == "train"
        if not train.any() and (data.split == "").all():
            train = np.ones(len(data), dtype=bool)
        idx = np.flatnonzero(train & (y == 0))
        if len(idx) < 2:
            raise ValueError("residual-ssl: the autoencoder trains on labelled NORMAL volumes of the training "
                             f"split, found {len(idx)} (labels: {data.label_names or 'none'})")
        return idx

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        self.ae_.eval()
        return torch.cat([self.ae_(x[i:i + batch_size].to(self.device_)).float().cpu()
                          for i in range(0, len(x), batch_size)]).numpy()

    def residuals(self, data) -> np.ndarray:
        """Residual maps (N x D x H x W, float32 in [0, 1]) of any volumes with the trained AE."""
        x = volumes_to_tensor(data.x)
        rec = self.reconstruct(x)
        return np.stack([residual_map(x[i, 0].numpy(), rec[i, 0], self.median_kernel) for i in range(len(x))])

    # -------------------------------------------------------------- the contract
    def steps(self, data, *, resume=None):
        from ..device import autocast

        x_all = volumes_to_tensor(data.x)
        ae_idx = self.ae_training_indices(data)
        pre_idx = self._select(data)
        self._init(x_all.shape[2:])
        if resume is not None:
            self.load_state_dict(resume)
        # torchrun: each rank forwards its rows of every global batch; losses over the gathered
        # outputs, BatchNorm over the global batch, gradients averaged (core.jobs.distributed)
        dist.prepare_all(self.ae_, self.model_)
        total_epochs = self.ae_epochs + self.epochs

        # ---- stage 1: autoencoder on normal training volumes
        bs = min(self.batch_size, len(ae_idx))
        spe = max(1, len(ae_idx) // bs)
        total = self.ae_epochs * spe + self.epochs * max(1, len(pre_idx) // min(self.batch_size, len(pre_idx)))
        meter = RateMeter((self.ae_epochs - self.ae_epoch_) * spe)
        for epoch in range(self.ae_epoch_, self.ae_epochs):
            perm = np.random.default_rng([self.seed, 1000 + epoch]).permutation(ae_idx)
            for step in range(self.ae_step_ if epoch == self.ae_epoch_ else 0, spe):
                self.ae_.train()
                xb = x_all[perm[step * bs:(step + 1) * bs]].to(self.device_)
                with autocast(self.device_):
                    recon = dist.global_batch(self.ae_(dist.local_batch(xb)))
                loss = ae_l1_loss(recon.float(), xb)["recon_error"]
                self.ae_opt_.zero_grad(set_to_none=True)
                loss.backward()
                dist.sync_gradients(self.ae_opt_)
                self.ae_opt_.step()
                self.ae_epoch_, self.ae_step_ = (epoch, step + 1) if step + 1 < spe else (epoch + 1, 0)
                rate, eta = meter.update(len(xb))
                yield Progress(epoch=epoch, step=step + 1, global_step=epoch * spe + step + 1,
                               n_epochs=total_epochs, steps_per_epoch=spe, losses={"ae_l1": float(loss.detach())},
                               samples_per_s=rate, eta_s=eta, epoch_end=step + 1 == spe, message="autoencoder",
                               total_steps=total)

        # ---- stage 2: residual maps of every volume (deterministic given the AE: recomputed on resume)
        self.stage_ = "pretext"
        # (under torchrun each rank maps its block of the volumes, and every rank gets them all)
        mine = data if not dist.active() else data.subset(np.arange(len(data))[dist.local_share(len(data))])
        self.residuals_ = dist.gather_array(self.residuals(mine))
        self.residual_ids_ = np.asarray(data.ids)
        target_all = torch.from_numpy(np.stack([pretext_target(r) for r in self.residuals_]))[:, None]
        ae_steps = self.ae_epochs * spe
        yield Progress(epoch=self.ae_epochs, step=0, global_step=ae_steps, n_epochs=total_epochs,
                       steps_per_epoch=spe, epoch_end=True, message="residuals computed", total_steps=total)

        # ---- stage 3: ResUNet predicts the residual from the volume
        bs = min(self.batch_size, len(pre_idx))
        spe = max(1, len(pre_idx) // bs)
        meter = RateMeter((self.epochs - self.epoch_) * spe - self.step_)
        for epoch in range(self.epoch_, self.epochs):
            perm = np.random.default_rng([self.seed, epoch]).permutation(pre_idx)
            for step in range(self.step_ if epoch == self.epoch_ else 0, spe):
                self.model_.train()
                gstep = epoch * spe + step
                self._set_lr(gstep, spe)
                sel = perm[step * bs:(step + 1) * bs]
                xb, tb = flip_pair(x_all[sel], target_all[sel], _gen(self.seed, epoch, step))
                xb, tb = xb.to(self.device_), tb.to(self.device_)
                with autocast(self.device_):
                    out = dist.global_batch(self.model_.reconstruct(dist.local_batch(xb)))
                loss = residual_loss(out.float(), tb, self.loss)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                dist.sync_gradients(self.opt_)
                self.opt_.step()
                self.epoch_, self.step_ = (epoch, step + 1) if step + 1 < spe else (epoch + 1, 0)
                rate, eta = meter.update(len(xb))
                yield Progress(epoch=self.ae_epochs + epoch, step=step + 1, global_step=ae_steps + gstep + 1,
                               n_epochs=total_epochs, steps_per_epoch=spe,
                               losses={"residual": float(loss.detach())}, samples_per_s=rate, eta_s=eta,
                               epoch_end=step + 1 == spe, message="pretext", total_steps=total)
        self.epoch_, self.step_ = self.epochs, 0
        self.stage_ = "done"


# ============================================================================ fine-tuning
class AnomalyFinetune(Method):
    """Normal vs anomalous from a pretrained ResUNet encoder (or from scratch: supervised baseline).

    Trains on a stratified ``label_fraction`` of the labelled training split (subset seed
    ``fraction_seed``, recorded in ``fraction_``), validates on the val split every epoch
    (early stopping on the class-weighted val loss, best weights restored), then sets the
    threshold at the F1-best point of the validation PR curve and reports test metrics in
    ``metrics_`` and in the last Progress.
    """

    name = "residual-ssl"
    input_kind = "volume"
    param_choices = {"class_weighting": ("balanced", "none")}
    param_help = {
        "init_checkpoint": "checkpoint of a residual-ssl/simclr/byol/simsiam/masked run ('' = from scratch)",
        "label_fraction": "fraction of the labelled training split used (stratified)",
        "fraction_seed": "seed of the label-fraction subset",
        "epochs": "maximum epochs", "patience": "early stopping: epochs without a lower val loss",
        "batch_size": "volumes per step", "lr": "Adam learning rate",
        "class_weighting": "balanced: CE weights n/(2 n_c) of the training subset",
        "augment": "random flips / crops of training volumes",
        "widen_factor": "ResUNet width when starting from scratch (a checkpoint sets its own)",
        "normal_label": "label of the normal class", "seed": "random seed", "device": "auto, cpu or cuda",
    }

    def __init__(self, *, init_checkpoint="", label_fraction=1.0, fraction_seed=0, epochs=30, patience=5,
                 batch_size=16, lr=3e-4, weight_decay=0.0, class_weighting="balanced", augment=True,
                 widen_factor=1.0, normal_label="", seed=0, device="auto"):
        self.init_checkpoint = init_checkpoint
        self.label_fraction = label_fraction
        self.fraction_seed = fraction_seed
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weighting = class_weighting
        self.augment = augment
        self.widen_factor = widen_factor
        self.normal_label = normal_label
        self.seed = seed
        self.device = device

    # -------------------------------------------------------------- setup
    def _encoder_source(self):
        if not self.init_checkpoint:
            return None, self.widen_factor
        from ..jobs import load_checkpoint

        state = load_checkpoint(self.init_checkpoint) if not isinstance(self.init_checkpoint, dict) \
            else self.init_checkpoint
        if "encoder" not in state:
            raise ValueError(f"{self.init_checkpoint}: not a ResUNet pretraining checkpoint (no 'encoder' entry)")
        return state["encoder"], float(state.get("params", {}).get("widen_factor", self.widen_factor))

    def _init(self, widen: float | None = None):
        """Build the network; ``widen`` given (rebuilding from our own checkpoint): skip reading
        ``init_checkpoint``, whose weights the checkpoint's own state replaces anyway."""
        from ..device import pick_device, seed_everything
        from ..models.resunet3d import resunet18

        seed_everything(self.seed)
        self.device_ = pick_device(self.device)
        encoder, widen = self._encoder_source() if widen is None else (None, widen)
        self.widen_ = widen
        self.model_ = resunet18(widen_factor=widen)
        if encoder is not None:
            missing = set(self.model_.encoder_state_dict()) - set(encoder)
            if missing:
                raise ValueError(f"{self.init_checkpoint}: encoder weights missing {sorted(missing)[:3]}...")
            self.model_.load_state_dict(encoder, strict=False)
        self.model_.to(self.device_)
        params = list(self.model_.encoder_parameters()) + list(self.model_.fc.parameters())
        self.opt_ = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        self.epoch_, self.step_ = 0, 0
        self.best_val_, self.bad_epochs_, self.best_state_, self.stopped_ = float("inf"), 0, None, False
        self.history_ = []

    def _splits(self, data):
        from ..label_fraction import fraction_record, stratified_fraction

        y = binary_targets(data, self.normal_label)
        train = np.flatnonzero((data.split == "train") & (y >= 0))
        val = np.flatnonzero((data.split == "val") & (y >= 0))
        test = np.flatnonzero((data.split == "test") & (y >= 0))
        if not len(train) or not len(val):
            raise ValueError("anomaly fine-tuning needs labelled 'train' and 'val' samples "
                             f"(found {len(train)} train, {len(val)} val)")
        if len(np.unique(y[train])) < 2:
            raise ValueError("anomaly fine-tuning needs both normal and anomalous training samples")
        sub = stratified_fraction(y[train], self.label_fraction, self.fraction_seed)
        self.fraction_ = fraction_record(y[train], self.label_fraction, self.fraction_seed)
        return y, train[sub], val, test

    def _class_weights(self, y_train):
        if self.class_weighting == "none":
            return torch.ones(2)
        counts = np.bincount(y_train, minlength=2).astype(np.float64)
        return torch.tensor(len(y_train) / (2 * np.maximum(counts, 1)), dtype=torch.float32)

    @torch.no_grad()
    def _scores(self, x, batch_size=64):
        self.model_.eval()
        logits = torch.cat([self.model_.classify(x[i:i + batch_size].to(self.device_)).float().cpu()
                            for i in range(0, len(x), batch_size)])
        return logits

    # -------------------------------------------------------------- the contract
    def steps(self, data, *, resume=None):
        from ..device import autocast
        from ..metrics.anomaly import anomaly_report, auprc, f1_best_threshold

        x_all = volumes_to_tensor(data.x)
        y, tr, va, te = self._splits(data)
        self._init()
        if resume is not None:
            self.load_state_dict(resume)
        dist.prepare_all(self.model_)  # torchrun: as ResidualSSL's steps
        weights = self._class_weights(y[tr]).to(self.device_)
        y_t = torch.from_numpy(np.maximum(y, 0)).long()
        bs = min(self.batch_size, len(tr))
        spe = max(1, len(tr) // bs)
        meter = RateMeter((self.epochs - self.epoch_) * spe - self.step_)
        for epoch in range(self.epoch_, self.epochs):
            if self.stopped_:
                break
            perm = np.random.default_rng([self.seed, epoch]).permutation(tr)
            for step in range(self.step_ if epoch == self.epoch_ else 0, spe):
                self.model_.train()
                sel = perm[step * bs:(step + 1) * bs]
                xb = x_all[sel]
                if self.augment:
                    xb = augment_volumes(xb, _gen(self.seed, epoch, step), scale=(0.85, 1.0), max_shift=0.05,
                                         noise=0.0)
                xb, yb = xb.to(self.device_), y_t[sel].to(self.device_)
                with autocast(self.device_):
                    logits = dist.global_batch(self.model_.classify(dist.local_batch(xb)))
                loss = F.cross_entropy(logits.float(), yb, weight=weights)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                dist.sync_gradients(self.opt_)
                self.opt_.step()
                last = step + 1 == spe
                self.epoch_, self.step_ = (epoch, step + 1) if not last else (epoch + 1, 0)
                metrics = {}
                if last:
                    vlog = self._scores(x_all[va])
                    vloss = float(F.cross_entropy(vlog, y_t[va], weight=weights.cpu()))
                    vs = torch.softmax(vlog, 1)[:, 1].numpy()
                    metrics = {"val_loss": vloss, "val_auprc": auprc(vs, y[va])}
                    self.history_.append({"epoch": epoch, **metrics})
                    if vloss < self.best_val_:
                        self.best_val_, self.bad_epochs_ = vloss, 0
                        self.best_state_ = {k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()}
                        self.best_epoch_ = epoch
                    else:
                        self.bad_epochs_ += 1
                        self.stopped_ = self.bad_epochs_ >= self.patience
                rate, eta = meter.update(len(sel))
                yield Progress(epoch=epoch, step=step + 1, global_step=epoch * spe + step + 1, n_epochs=self.epochs,
                               steps_per_epoch=spe, losses={"ce": float(loss.detach())}, metrics=metrics,
                               samples_per_s=rate, eta_s=eta, epoch_end=last)

        # ---- evaluation with the best weights; the threshold comes from validation only
        if self.best_state_ is not None:
            self.model_.load_state_dict(self.best_state_)
        vs = torch.softmax(self._scores(x_all[va]), 1)[:, 1].numpy()
        self.threshold_ = f1_best_threshold(vs, y[va]) if len(np.unique(y[va])) == 2 else 0.5
        self.metrics_ = {"val_auprc": auprc(vs, y[va]), "threshold": self.threshold_,
                         "epochs_run": len(self.history_), "best_epoch": getattr(self, "best_epoch_", -1),
                         "n_train": int(len(tr))}
        if len(te):
            ts = torch.softmax(self._scores(x_all[te]), 1)[:, 1].numpy()
            rep = anomaly_report(ts, y[te], threshold=self.threshold_)
            self.metrics_.update({f"test_{k}": v for k, v in rep.items() if k != "threshold"})
        self.epoch_, self.step_, self.stopped_ = self.epochs, 0, True
        yield Progress(epoch=self.epochs, step=0, global_step=self.epochs * spe, n_epochs=self.epochs,
                       steps_per_epoch=spe, metrics={k: float(v) for k, v in self.metrics_.items()},
                       epoch_end=True, message="evaluated on the test split")

    def predict_proba(self, data) -> np.ndarray:
        """Anomaly probability (softmax[:, 1]) per sample."""
        return torch.softmax(self._scores(volumes_to_tensor(data.x)), 1)[:, 1].numpy()

    def predict_clusters(self, data) -> np.ndarray:
        """0 normal / 1 anomalous at the validation threshold (the app shows it as a clustering)."""
        return (self.predict_proba(data) > getattr(self, "threshold_", 0.5)).astype(int)

    @torch.no_grad()
    def transform(self, data, batch_size: int = 64) -> np.ndarray:
        self.model_.eval()
        x = volumes_to_tensor(data.x)
        return torch.cat([self.model_.features(x[i:i + batch_size].to(self.device_)).float().cpu()
                          for i in range(0, len(x), batch_size)]).numpy()

    def state_dict(self) -> dict:
        return {"params": self.get_params(), "method": "residual-ssl-finetune", "widen": self.widen_,
                "model": self.model_.state_dict(),
                "encoder": self.model_.encoder_state_dict(), "optimizer": self.opt_.state_dict(),
                "epoch": self.epoch_, "step": self.step_, "best_val": self.best_val_,
                "bad_epochs": self.bad_epochs_, "best_state": self.best_state_, "stopped": self.stopped_,
                "history": self.history_, "threshold": getattr(self, "threshold_", None),
                "metrics": getattr(self, "metrics_", None), "fraction": getattr(self, "fraction_", None),
                "best_epoch": getattr(self, "best_epoch_", -1), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict):
        if not hasattr(self, "model_"):
            self._init(widen=state.get("widen"))
        self.model_.load_state_dict(state["model"])
        self.opt_.load_state_dict(state["optimizer"])
        self.epoch_, self.step_ = int(state["epoch"]), int(state["step"])
        self.best_val_, self.bad_epochs_ = float(state["best_val"]), int(state["bad_epochs"])
        self.best_state_, self.stopped_ = state["best_state"], bool(state["stopped"])
        self.history_ = list(state["history"])
        self.best_epoch_ = state.get("best_epoch", -1)
        if state.get("threshold") is not None:
            self.threshold_ = state["threshold"]
        if state.get("metrics") is not None:
            self.metrics_ = state["metrics"]
        if state.get("fraction") is not None:
            self.fraction_ = state["fraction"]
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        return self
