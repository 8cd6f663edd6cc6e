"""Supervised multi-label fine-tuning of a clustering trunk (ultrasound paper, section 2.2.4).

The feature extractor of a PICA / DeepCluster run is kept, its single-label cluster head is
discarded and replaced by a multi-label head trained with binary cross-entropy (eq. 9) on the
labelled images; trunk and head are learned jointly. Training stops after ``patience`` (7)
epochs without improvement on the validation set and the weights of the best validation epoch
are kept; one decision threshold per class is then set on the validation set to maximise that
class's F1 (section 3.2).

The training loop (``LabelledImageTrainer``) is shared with ``core.methods.fixmatch``: per-epoch
index orders derived from ``(seed, epoch)`` make resume exact, the model/optimizer/RNG state,
the best weights and the early-stopping counters all travel in ``state_dict()``.
"""
from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..dataset import SampleSet
from ..device import autocast, pick_device, seed_everything
from ..jobs import Progress, RateMeter
from ..jobs import distributed as dist
from ..metrics.classification import apply_thresholds, best_f1_thresholds, per_class_scores
from .base import Method

__all__ = ["ClusterFinetune", "LabelledImageTrainer", "images_to_tensor", "load_trunk_state",
           "stratified_fraction", "bce_loss", "WeightEMA", "cosine_lr_factor"]


# ----------------------------------------------------------------------------- pure pieces
def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 9: binary cross-entropy averaged over the C + 1 classes and the batch."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def cosine_lr_factor(step: int, total_steps: int) -> float:
    """FixMatch's learning-rate decay: ``cos(7 pi k / (16 K))`` at step k of K (1 -> 0.2)."""
    return math.cos(7 * math.pi * min(step, total_steps) / (16 * max(1, total_steps)))


class WeightEMA:
    """Exponential moving average of a model's weights and buffers (FixMatch evaluates with it,
    decay 0.999). The decay is ``min(decay, (1 + n) / (10 + n))`` after n updates, so that a short
    run is not dominated by its initial weights; integer buffers are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = model.state_dict()
        for k, e in self.module.state_dict().items():
            v = src[k].detach()
            if e.is_floating_point():
                e.lerp_(v.to(e.dtype), 1 - d)
            else:
                e.copy_(v)
        self.updates += 1


def images_to_tensor(x) -> torch.Tensor:
    """Images -> float32 N x 1 x H x W in [0, 1], the clustering trunks' input convention
    (``augment2d.to_unit_tensor``: uint8 / 255, other dtypes min-max scaled per image)."""
    from .augment2d import to_unit_tensor

    return to_unit_tensor(x)


def stratified_fraction(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask keeping ``fraction`` of the rows of each distinct label combination of ``y``.

    At least one row per combination is kept (a class never vanishes from the labelled set);
    the rows kept depend on ``seed`` only. ``fraction >= 1`` keeps everything.
    """
    n = len(y)
    if not 0 < fraction:
        raise ValueError(f"label_fraction must be > 0, got {fraction}")
    if fraction >= 1:
        return np.ones(n, dtype=bool)
    rng = np.random.default_rng(seed)
    _, group = np.unique(np.asarray(y) > 0, axis=0, return_inverse=True)
    keep = np.zeros(n, dtype=bool)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        take = max(1, int(round(fraction * len(rows))))
        keep[rng.choice(rows, size=take, replace=False)] = True
    return keep


def load_trunk_state(checkpoint) -> tuple[dict, dict]:
    """Trunk weights and backbone settings from a PICA / DeepCluster / fine-tuning checkpoint.

    Returns ``(trunk_state_dict, backbone_kwargs)``. The trunk is looked up as a ``"trunk"``
    entry, else as the ``trunk.`` / ``backbone.`` / ``features.`` prefixed keys of the
    ``"model"`` entry. ``backbone_kwargs`` (``backbone``, ``small_input``) come from the
    checkpoint's ``"params"`` where it names them, and the trunk's exact build (``stem``,
    ``sobel``, ``input_size``, ``resize``: the size the run resized its images to, 0 = none) from
    its ``"trunk_config"`` when it has one.
    """
    from ..jobs import load_checkpoint

    path = None
    if not isinstance(checkpoint, dict):
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"{path}: init_checkpoint not found")
        checkpoint = load_checkpoint(path)
    where = f"{path}" if path else "checkpoint"
    trunk = None
    for key in ("trunk", "backbone"):
        if isinstance(checkpoint.get(key), dict):
            trunk = checkpoint[key]
            break
    if trunk is None:
        for key in ("model", "net", "network"):
            model = checkpoint.get(key)
            if not isinstance(model, dict):
                continue
            for prefix in ("trunk.", "backbone.", "features.", "encoder."):
                sub = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
                if sub:
                    trunk = sub
                    break
            if trunk is not None:
                break
    if trunk is None:
        raise ValueError(f"{where}: no trunk weights found (expected a 'trunk' entry or 'model' "
                         f"keys prefixed 'trunk.'); keys: {sorted(checkpoint)[:12]}")
    params = checkpoint.get("params", {}) or {}
    kwargs = {k: params[k] for k in ("backbone", "small_input") if k in params}
    cfg = checkpoint.get("trunk_config")
    if isinstance(cfg, dict):  # PICA / DeepCluster / classifiers since input_size: the exact trunk
        kwargs.update({k: cfg[k] for k in ("backbone", "small_input", "stem", "sobel", "input_size", "resize")
                       if k in cfg})
    return trunk, kwargs


class ImageClassifier(nn.Module):
    """A trunk (B, 1, H, W) -> (B, 512) and named linear heads on its features."""

    def __init__(self, backbone: str, small_input: bool, heads: dict[str, int], *, stem: str | None = None,
                 sobel: bool = False, input_size: int | None = None):
        super().__init__()
        from ..models.backbones2d import build_backbone

        self.trunk = build_backbone(backbone, 1, small_input=small_input, stem=stem, sobel=sobel,
                                    input_size=input_size)
        self.heads = nn.ModuleDict({k: nn.Linear(self.trunk.out_dim, n) for k, n in heads.items()})

    def forward(self, x):
        f = self.trunk(x)
        return f, {k: h(f) for k, h in self.heads.items()}


def _augmenter(kind: str, generator: torch.Generator):
    """``"weak"`` / ``"strong"`` batch augmentation from ``augment2d`` drawing from ``generator``
    (its state is checkpointed, so a resumed run sees the same augmentations); None for "none"."""
    if kind in ("none", "", None):
        return None
    from .augment2d import AUGMENTATIONS

    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; known: {', '.join(AUGMENTATIONS)}")
    fn = AUGMENTATIONS[kind]
    return lambda x: fn(x, generator=generator)


# ----------------------------------------------------------------------------- shared trainer
class LabelledImageTrainer(Method):
    """Training loop shared by fine-tuning and FixMatch: epochs of steps, validation at each
    epoch end, best-epoch weights, early stopping, per-class thresholds.

    Subclasses define ``_heads(n_classes)`` (name -> width), ``_prepare(data)`` (extra index
    sets), ``_steps_per_epoch()``, ``_train_step(epoch, step)`` -> loss terms and
    ``_scores(outputs)`` (multi-label probabilities from the heads' outputs).
    """

    input_kind = "image2d"

    # --------------------------------------------------------------- data and model
    def load_data(self, project, dataset=None) -> SampleSet:
        from ..dataset import from_project

        if getattr(self, "init_run", 0):
            # looked up in the project each time (a resumed run's recorded init_checkpoint may
            # point at the folder's earlier location); inside the project only, loaded safely
            from ..jobs.checkpoint import run_checkpoint_path

            self.init_checkpoint = str(run_checkpoint_path(project, project.run(int(self.init_run))))
        return from_project(project, kind="image2d", dataset=dataset)

    def _trunk_settings(self, data: SampleSet) -> None:
        """The trunk to build and the size to resize images to: this method's own settings, or
        the init checkpoint's where it has them (its backbone, stem, Sobel input and resize)."""
        from .augment2d import resize_images, to_unit_tensor

        cfg = {"backbone": self.backbone, "small_input": bool(self.small_input), "stem": None,
               "sobel": False, "resize": int(getattr(self, "input_size", 0) or 0)}
        self.trunk_state_ = None
        if self.init_checkpoint:
            self.trunk_state_, kw = load_trunk_state(self.init_checkpoint)
            cfg["backbone"] = kw.get("backbone", cfg["backbone"])
            # a checkpoint that does not name its stem was built with the backbone's default
            cfg["small_input"] = bool(kw.get("small_input", True))
            cfg["stem"], cfg["sobel"] = kw.get("stem"), bool(kw.get("sobel", False))
            if not cfg["resize"]:
                cfg["resize"] = int(kw.get("resize", 0) or 0)
        x0 = to_unit_tensor(resize_images(data.x[:1], cfg["resize"]))
        cfg["input_size"] = int(max(x0.shape[-2:]))
        self.trunk_config_ = cfg

    def _build_model(self, n_classes: int) -> None:
        cfg = self.trunk_config_
        trunk_state = self.trunk_state_
        backbone = cfg["backbone"]
        self.backbone_ = backbone
        self.small_input_ = bool(cfg["small_input"])
        self.model_ = ImageClassifier(backbone, self.small_input_, self._heads(n_classes), stem=cfg["stem"],
                                      sobel=cfg["sobel"], input_size=cfg["input_size"]).to(self.device_)
        cfg["stem"] = getattr(self.model_.trunk, "stem_name", None)
        if trunk_state is not None:
            missing, unexpected = self.model_.trunk.load_state_dict(trunk_state, strict=False)
            if missing or unexpected:
                raise ValueError(f"{self.init_checkpoint}: trunk weights do not fit a {backbone} trunk "
                                 f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
        self.optimizer_ = self._make_optimizer()
        decay = float(getattr(self, "ema_decay", 0.0) or 0.0)
        self.ema_ = WeightEMA(self.model_, decay) if decay > 0 else None

    def _make_optimizer(self):
        """Adam (the ultrasound paper), or SGD with Nesterov momentum and weight decay on the
        weights only, no decay on biases and batch-norm parameters (FixMatch, kekmodel)."""
        kind = getattr(self, "optimizer", "adam")
        if kind == "adam":
            return torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if kind != "sgd":
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
        decay, no_decay = [], []
        for name, p in self.model_.named_parameters():
            (no_decay if (p.ndim <= 1 or name.endswith(".bias")) else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.SGD(groups, lr=self.lr, momentum=float(getattr(self, "momentum", 0.9)), nesterov=True)

    def _set_lr(self, total_steps: int) -> None:
        """The learning rate of the coming step (schedule "cosine": FixMatch's decay over the run)."""
        if getattr(self, "schedule", "constant") != "cosine":
            return
        lr = self.lr * cosine_lr_factor(self.global_step_, total_steps)
        for g in self.optimizer_.param_groups:
            g["lr"] = lr

    def _eval_module(self) -> nn.Module:
        """The network evaluated: the weight EMA while training with one, else the model."""
        ema = getattr(self, "ema_", None)
        return ema.module if ema is not None else self.model_

    def _split_indices(self, data: SampleSet):
        if data.y is None:
            raise ValueError(f"{type(self).__name__} needs labels: the data has none")
        train = np.isin(data.split, ["train", ""])
        labelled = data.labelled
        cand = np.flatnonzero(train & labelled)
        if len(cand) == 0:
            raise ValueError("no labelled training samples (split 'train' with at least one label)")
        keep = stratified_fraction(data.y[cand], self.label_fraction, self.seed)
        self.labelled_idx_ = cand[keep]
        self.train_idx_ = np.flatnonzero(train)
        self.val_idx_ = np.flatnonzero((data.split == "val") & labelled)

    def _epoch_order(self, epoch: int, pool: np.ndarray, length: int, stream: int) -> np.ndarray:
        """``length`` indices from ``pool``: concatenated permutations from (seed, epoch, stream)."""
        rng = np.random.default_rng([self.seed, epoch, stream])
        reps = max(1, math.ceil(length / max(1, len(pool))))
        return np.concatenate([pool[rng.permutation(len(pool))] for _ in range(reps)])[:length]

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _outputs(self, x: torch.Tensor, batch_size: int = 256):
        net = self._eval_module()
        net.eval()
        self.model_.eval()
        feats, outs = [], {}
        for i in range(0, len(x), batch_size):
            with autocast(self.device_, getattr(self, "mixed_precision", "auto")):
                f, o = net(x[i:i + batch_size].to(self.device_))
            feats.append(f.float().cpu())
            for k, v in o.items():
                outs.setdefault(k, []).append(v.float().cpu())
        self.model_.train()
        return torch.cat(feats), {k: torch.cat(v) for k, v in outs.items()}

    def _validate(self) -> dict:
        if len(self.val_idx_) == 0:
            return {}
        _, outs = self._outputs(self.x_[torch.from_numpy(self.val_idx_)])
        scores = self._scores(outs).numpy()
        y = self.y_[self.val_idx_]
        th = best_f1_thresholds(y, scores)
        f1 = per_class_scores(y, apply_thresholds(scores, th)).loc["weighted avg", "f1"]
        eps = 1e-6
        bce = float(-(y * np.log(scores + eps) + (1 - y) * np.log(1 - scores + eps)).mean())
        return {"val_f1": float(f1), "val_bce": bce}

    # --------------------------------------------------------------- the loop
    def steps(self, data: SampleSet, *, resume: dict | None = None):
        self.device_ = pick_device(self.device)
        seed_everything(self.seed)
        self.label_names_ = list(data.label_names)
        self._trunk_settings(data)
        self.x_ = self._tensor(data.x)  # resized once, on load
        self.y_ = np.asarray(data.y, dtype=np.float32) if data.y is not None else None
        self._split_indices(data)
        self.aug_gen_ = torch.Generator().manual_seed(int(self.seed))
        self.weak_ = _augmenter(self.augment, self.aug_gen_)
        self._prepare(data)
        self._build_model(len(self.label_names_))
        self.epoch_, self.step_, self.global_step_ = 0, 0, 0
        self.best_score_, self.best_epoch_, self.bad_epochs_ = -math.inf, -1, 0
        self.best_model_, self.stopped_, self.history_ = None, False, []
        self.thresholds_ = np.full(len(self.label_names_), 0.5)
        if resume is not None:
            self._load_training_state(resume)
        # torchrun: global-batch BatchNorm and rank 0's weights; each step forwards this rank's
        # rows of the global batch and computes the loss over the gathered outputs
        dist.prepare_all(self.model_)
        spe = self._steps_per_epoch()
        meter = RateMeter(max(1, (self.epochs - self.epoch_) * spe - self.step_))
        self.model_.train()
        t_epoch = time.perf_counter()
        while self.epoch_ < self.epochs and not self.stopped_:
            e = self.epoch_
            self._begin_epoch(e, spe)
            for s in range(self.step_, spe):
                self._set_lr(self.epochs * spe)
                losses, n = self._train_step(e, s)
                if self.ema_ is not None:
                    self.ema_.update(self.model_)
                self.step_, self.global_step_ = s + 1, self.global_step_ + 1
                rate, eta = meter.update(n)
                metrics, end = {}, s == spe - 1
                if end:
                    metrics = self._end_epoch(e)
                    metrics["epoch_s"] = time.perf_counter() - t_epoch
                    self.history_.append({"epoch": e, **losses, **metrics})
                    t_epoch = time.perf_counter()
                    self.epoch_, self.step_ = e + 1, 0
                yield Progress(epoch=e, step=s + 1, global_step=self.global_step_, n_epochs=self.epochs,
                               steps_per_epoch=spe, losses=losses, metrics=metrics, samples_per_s=rate,
                               eta_s=eta, epoch_end=end,
                               message="early stop" if end and self.stopped_ else "")
        self._finish()

    def _end_epoch(self, epoch: int) -> dict:
        metrics = self._validate()
        if not metrics:  # no validation set: the last epoch is the model
            return metrics
        score = metrics["val_f1"] if self.monitor == "f1" else -metrics["val_bce"]
        if score > self.best_score_ + 1e-9:
            self.best_score_, self.best_epoch_, self.bad_epochs_ = score, epoch, 0
            self.best_model_ = {k: v.detach().cpu().clone() for k, v in self._eval_module().state_dict().items()}
        else:
            self.bad_epochs_ += 1
            if self.patience and self.bad_epochs_ >= self.patience:
                self.stopped_ = True
        metrics["best_epoch"] = float(self.best_epoch_)
        return metrics

    def _finish(self) -> None:
        if self.best_model_ is not None:
            self.model_.load_state_dict(self.best_model_)
        elif getattr(self, "ema_", None) is not None:  # no validation: the final EMA weights
            self.model_.load_state_dict(self.ema_.module.state_dict())
        self.ema_ = None  # from here on the model is what is evaluated and saved
        if len(self.val_idx_):
            _, outs = self._outputs(self.x_[torch.from_numpy(self.val_idx_)])
            self.thresholds_ = best_f1_thresholds(self.y_[self.val_idx_], self._scores(outs).numpy())
        self.finished_ = True

    # --------------------------------------------------------------- hooks with defaults
    def _prepare(self, data: SampleSet) -> None:
        pass

    def _begin_epoch(self, epoch: int, spe: int) -> None:
        pass

    # --------------------------------------------------------------- inference
    def _tensor(self, x) -> torch.Tensor:
        from .augment2d import resize_images

        cfg = getattr(self, "trunk_config_", None) or {}
        return images_to_tensor(resize_images(x, int(cfg.get("resize", 0) or 0)))

    def _require_model(self):
        if getattr(self, "model_", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: train it or load a checkpoint")

    def transform(self, data) -> np.ndarray:
        """Trunk features (N x 512)."""
        self._require_model()
        f, _ = self._outputs(self._tensor(getattr(data, "x", data)))
        return f.numpy()

    def predict_proba(self, data) -> np.ndarray:
        """Per-class probabilities (N x C) over ``label_names_``."""
        self._require_model()
        _, outs = self._outputs(self._tensor(getattr(data, "x", data)))
        return self._scores(outs).numpy()

    def predict(self, data) -> np.ndarray:
        """Multi-hot decisions with the validation-tuned per-class thresholds."""
        return apply_thresholds(self.predict_proba(data), self.thresholds_)

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        self._require_model()
        return {
            "params": self.get_params(),
            "backbone": self.backbone_, "small_input": self.small_input_,
            "trunk_config": dict(self.trunk_config_),
            "label_names": list(self.label_names_),
            "model": self.model_.state_dict(),
            "trunk": self.model_.trunk.state_dict(),
            "optimizer": self.optimizer_.state_dict() if getattr(self, "optimizer_", None) else None,
            "epoch": self.epoch_, "step": self.step_, "global_step": self.global_step_,
            "best_model": self.best_model_, "best_score": self.best_score_,
            "best_epoch": self.best_epoch_, "bad_epochs": self.bad_epochs_, "stopped": self.stopped_,
            "thresholds": np.asarray(self.thresholds_, dtype=np.float64),
            "labelled_ids_index": np.asarray(self.labelled_idx_),
            "history": list(self.history_),
            "extra": self._extra_state(),
            "ema": ({"model": self.ema_.module.state_dict(), "updates": self.ema_.updates}
                    if getattr(self, "ema_", None) is not None else None),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "augment": self.aug_gen_.get_state() if getattr(self, "aug_gen_", None) else None,
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, extra: dict) -> None:
        pass

    def _load_training_state(self, state: dict) -> None:
        self.model_.load_state_dict(state["model"])
        if state.get("optimizer"):
            self.optimizer_.load_state_dict(state["optimizer"])
        self.epoch_, self.step_, self.global_step_ = state["epoch"], state["step"], state["global_step"]
        self.best_model_, self.best_score_ = state["best_model"], state["best_score"]
        self.best_epoch_, self.bad_epochs_ = state["best_epoch"], state["bad_epochs"]
        self.stopped_, self.history_ = state["stopped"], list(state.get("history", []))
        self.thresholds_ = np.asarray(state["thresholds"])
        if not np.array_equal(np.asarray(state["labelled_ids_index"]), self.labelled_idx_):
            raise ValueError("resume: the labelled subset differs from the checkpoint's "
                             "(different data, label_fraction or seed)")
        self._load_extra_state(state.get("extra", {}))
        if self.ema_ is not None and state.get("ema"):
            self.ema_.module.load_state_dict(state["ema"]["model"])
            self.ema_.updates = int(state["ema"]["updates"])
        rng = state.get("rng") or {}
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("numpy") is not None:
            np.random.set_state(rng["numpy"])
        if rng.get("python") is not None:
            random.setstate(rng["python"])
        if rng.get("augment") is not None:
            self.aug_gen_.set_state(rng["augment"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def load_state_dict(self, state: dict) -> "LabelledImageTrainer":
        """Rebuild the trained network for inference (``transform`` / ``predict``)."""
        self.device_ = pick_device(self.device)
        self.label_names_ = list(state["label_names"])
        self._load_extra_state(state.get("extra", {}))
        self.backbone_, self.small_input_ = state["backbone"], state["small_input"]
        cfg = state.get("trunk_config") or {"backbone": self.backbone_, "small_input": self.small_input_,
                                            "stem": None, "sobel": False, "resize": 0, "input_size": 28}
        self.trunk_config_ = dict(cfg)
        self.model_ = ImageClassifier(self.backbone_, self.small_input_, self._heads(len(self.label_names_)),
                                      stem=cfg.get("stem"), sobel=bool(cfg.get("sobel", False)),
                                      input_size=cfg.get("input_size")).to(self.device_)
        self.model_.load_state_dict(state["model"])
        self.optimizer_, self.ema_ = None, None
        self.epoch_, self.step_, self.global_step_ = state["epoch"], state["step"], state["global_step"]
        self.best_model_, self.best_score_ = state.get("best_model"), state.get("best_score")
        self.best_epoch_, self.bad_epochs_ = state.get("best_epoch"), state.get("bad_epochs")
        self.stopped_, self.history_ = state.get("stopped"), list(state.get("history", []))
        self.thresholds_ = np.asarray(state["thresholds"])
        self.labelled_idx_ = np.asarray(state.get("labelled_ids_index", []))
        return self


# ----------------------------------------------------------------------------- fine-tuning
class ClusterFinetune(LabelledImageTrainer):
    """Multi-label head (BCE) on a clustering trunk, early stopping on validation F1."""

    name = "cluster-head"
    param_choices = {"backbone": ("resnet18", "convnet", "convnet_small", "vgg16_bn"), "augment": ("weak", "none"),
                     "monitor": ("f1", "loss"), "mixed_precision": ("auto", "bf16", "off"),
                     "optimizer": ("adam", "sgd"), "schedule": ("constant", "cosine")}
    param_help = {
        "init_checkpoint": "PICA / DeepCluster checkpoint whose trunk to start from ('' = random init)",
        "init_run": "or: the project run whose checkpoint to start from (0 = none)",
        "backbone": "trunk when starting at random (a checkpoint's own backbone wins)",
        "small_input": "ResNet stem chosen for the input size (3x3 up to 40 px, 3x3 stride 2 up to 96, then "
                       "ImageNet's); off: ImageNet stem; a checkpoint's own wins",
        "input_size": "resize images to this many pixels square on load (0: the init checkpoint's, else as stored)",
        "mixed_precision": "auto: bf16 on CUDA, float32 on CPU; bf16: bf16 on both; off: float32",
        "epochs": "maximum epochs (early stopping usually ends sooner)",
        "patience": "stop after this many epochs without validation improvement (0 = never)",
        "batch_size": "labelled images per step",
        "lr": "learning rate (the paper: Adam, 1e-4)",
        "weight_decay": "weight decay (SGD: on weights only, not on biases and batch-norm parameters)",
        "optimizer": "adam (the ultrasound paper) or sgd (Nesterov momentum, as FixMatch)",
        "momentum": "SGD momentum",
        "schedule": "constant learning rate, or FixMatch's cosine decay to 0.2 x lr over the epochs",
        "ema_decay": "evaluate and keep an exponential moving average of the weights (0 = off)",
        "label_fraction": "stratified fraction of the training labels used (seeded by seed)",
        "augment": "augmentation of the labelled images",
        "monitor": "validation figure for early stopping and model selection: weighted F1 or BCE",
        "seed": "seed of initialisation, label subset and batch order",
        "device": "auto / cpu / cuda",
    }

    def __init__(self, *, init_checkpoint: str = "", init_run: int = 0, backbone: str = "resnet18",
                 small_input: bool = True, input_size: int = 0, epochs: int = 100, patience: int = 7,
                 batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.0, optimizer: str = "adam",
                 momentum: float = 0.9, schedule: str = "constant", ema_decay: float = 0.0,
                 label_fraction: float = 1.0, augment: str = "weak", monitor: str = "f1",
                 mixed_precision: str = "auto", seed: int = 0, device: str = "auto"):
        self.init_checkpoint = init_checkpoint
        self.init_run = init_run
        self.backbone = backbone
        self.small_input = small_input
        self.input_size = input_size
        self.mixed_precision = mixed_precision
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.momentum = momentum
        self.schedule = schedule
        self.ema_decay = ema_decay
        self.label_fraction = label_fraction
        self.augment = augment
        self.monitor = monitor
        self.seed = seed
        self.device = device

    def _heads(self, n_classes: int) -> dict:
        return {"ml": n_classes}

    def _scores(self, outs: dict) -> torch.Tensor:
        return torch.sigmoid(outs["ml"])

    def _steps_per_epoch(self) -> int:
        n = len(self.labelled_idx_)
        if n < 2:  # batch norm cannot train on a single image
            raise ValueError(f"{n} labelled training image(s): fine-tuning needs at least 2")
        return max(1, n // self.batch_size)

    def _begin_epoch(self, epoch: int, spe: int) -> None:
        self.order_ = self._epoch_order(epoch, self.labelled_idx_, len(self.labelled_idx_), 0)

    def _train_step(self, epoch: int, step: int):
        spe = self._steps_per_epoch()
        bs = self.batch_size
        # the last step takes the remainder too, so every labelled image is seen once per epoch
        idx = self.order_[step * bs:(step + 1) * bs if step < spe - 1 else None]
        x = self.x_[torch.from_numpy(idx)].to(self.device_)
        y = torch.from_numpy(self.y_[idx]).to(self.device_)
        if self.weak_ is not None:
            x = self.weak_(x)
        with autocast(self.device_, self.mixed_precision):
            _, outs = self.model_(dist.local_batch(x))
            loss = bce_loss(dist.global_batch(outs["ml"]), y)
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        dist.sync_gradients(self.optimizer_)
        self.optimizer_.step()
        return {"bce": float(loss.detach())}, len(idx)
