"""FixMatch (Sohn et al. 2020) and the ultrasound paper's two multi-label versions (section 2.3).

Losses first, as pure functions:

* ``fixmatch_loss`` — single-label FixMatch exactly as kekmodel/FixMatch-pytorch ``train.py``:
  pseudo-labels from the weakly augmented view (no gradient), mask = max prob >= threshold,
  ``Lu`` = mean over ALL unlabelled samples of mask * CE(strong, pseudo).
* ``onehead_loss`` — One-Head (sigmoid) model. The paper (2.3.2, item 1): pseudo-label
  ``y_c = 1[p_c >= 0.5]`` per class, and "if the maximum probability of at least one class is
  greater than a threshold tau, then the derived pseudo-label is considered as a target label",
  i.e. ONE mask per image, ``1[max_c p_c >= tau]``, applied to the BCE of all its classes.
  ``mask_mode="per_label"`` instead reproduces ``fixmatch_multilabel_onehead_formula.npz``,
  an assumed generalisation that is NOT the paper's text: a mask per (image, class),
  ``p_c >= tau or p_c <= 1 - tau`` (confident negatives count, unconfident classes of a
  confident image do not).
* ``twohead_loss`` — Two-Head model: FixMatch's single-label loss on a head over label
  combinations (``w`` = one-hot combination of the labels, section 2.2.3) plus the BCE of a
  multi-label head on the labelled images (eq. 9); predictions come from the multi-label head.

Then ``FixMatch``: the method (variant "single" | "one-head" | "two-head"), trunk initialised at
random or from a PICA / DeepCluster checkpoint, training loop shared with fine-tuning.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast
from ..jobs import distributed as dist
from ..metrics.classification import combination_vocabulary
from .finetune import LabelledImageTrainer, _augmenter, bce_loss

__all__ = ["FixMatchTerms", "fixmatch_loss", "onehead_loss", "twohead_loss", "combination_targets",
           "FixMatch"]


class FixMatchTerms(NamedTuple):
    loss: torch.Tensor
    Lx: torch.Tensor
    Lu: torch.Tensor
    mask: torch.Tensor
    pseudo_targets: torch.Tensor
    max_probs: torch.Tensor


def fixmatch_loss(logits_x, targets_x, logits_u_w, logits_u_s, *, T: float = 1.0,
                  threshold: float = 0.95, lambda_u: float = 1.0) -> FixMatchTerms:
    """Single-label FixMatch loss (kekmodel ``train.py``). ``targets_x``: class ids; -1 = ignore."""
    logits_x, logits_u_w, logits_u_s = logits_x.float(), logits_u_w.float(), logits_u_s.float()
    targets_x = torch.as_tensor(targets_x, device=logits_x.device).long()
    if (targets_x >= 0).any():
        Lx = F.cross_entropy(logits_x, targets_x, reduction="mean", ignore_index=-1)
    else:  # no labelled target in this batch (two-head: no known combination)
        Lx = logits_x.sum() * 0.0
    pseudo = torch.softmax(logits_u_w.detach() / T, dim=-1)
    max_probs, targets_u = torch.max(pseudo, dim=-1)
    mask = max_probs.ge(threshold).float()
    Lu = (F.cross_entropy(logits_u_s, targets_u, reduction="none") * mask).mean()
    return FixMatchTerms(Lx + lambda_u * Lu, Lx, Lu, mask, targets_u, max_probs)


def onehead_loss(logits_x, targets_x, logits_u_w, logits_u_s, *, T: float = 1.0, threshold: float = 0.95,
                 lambda_u: float = 1.0, mask_mode: str = "paper") -> FixMatchTerms:
    """Multi-label One-Head FixMatch (sigmoid head); see the module docstring for ``mask_mode``.

    ``targets_x``: N x C multi-hot. ``Lx`` = BCE mean over labelled images and classes (eq. 9);
    ``Lu`` = mean over all unlabelled images and classes of mask * BCE(strong, pseudo).
    ``mask`` is per image (N,) for "paper", per image and class (N x C) for "per_label".
    """
    logits_x, logits_u_w, logits_u_s = logits_x.float(), logits_u_w.float(), logits_u_s.float()
    Lx = bce_loss(logits_x, targets_x)
    p = torch.sigmoid(logits_u_w.detach() / T)
    pseudo = p.ge(0.5).float()
    if mask_mode == "paper":
        max_probs = p.max(dim=1).values
        mask = max_probs.ge(threshold).float()
        weight = mask[:, None]
    elif mask_mode == "per_label":
        max_probs = p
        mask = (p.ge(threshold) | p.le(1 - threshold)).float()
        weight = mask
    else:
        raise ValueError(f"mask_mode must be 'paper' or 'per_label', got {mask_mode!r}")
    bce = F.binary_cross_entropy_with_logits(logits_u_s, pseudo, reduction="none")
    Lu = (bce * weight).mean()
    return FixMatchTerms(Lx + lambda_u * Lu, Lx, Lu, mask, pseudo, max_probs)


def twohead_loss(logits_x_combo, combo_targets_x, logits_x_ml, targets_x, logits_u_w, logits_u_s, *,
                 T: float = 1.0, threshold: float = 0.95, lambda_u: float = 1.0):
    """Two-Head loss: H(w, p) + L_BCE(v, p_bar) + lambda_u * Lu on the combination head.

    Returns ``(loss, terms, Lbce)`` where ``terms`` is the single-label ``FixMatchTerms`` of
    the combination head (its ``loss`` excludes the BCE term).
    """
    terms = fixmatch_loss(logits_x_combo, combo_targets_x, logits_u_w, logits_u_s, T=T,
                          threshold=threshold, lambda_u=lambda_u)
    Lbce = bce_loss(logits_x_ml, targets_x)
    return terms.loss + Lbce, terms, Lbce


def combination_targets(y: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Index of each row's label combination in ``vocabulary`` (K x C); -1 when not in it."""
    y = (np.asarray(y) > 0).astype(np.int8)
    voc = (np.asarray(vocabulary) > 0).astype(np.int8)
    out = np.full(len(y), -1, dtype=np.int64)
    if len(voc) == 0:
        return out
    hit = (y[:, None, :] == voc[None, :, :]).all(-1)
    found = hit.any(1)
    out[found] = hit[found].argmax(1)
    return out


class FixMatch(LabelledImageTrainer):
    """Semi-supervised FixMatch for multi-label (or single-label) 2D images.

    Each step draws ``batch_size`` labelled images and ``mu * batch_size`` images of the whole
    training split as unlabelled (labelled ones included, as FixMatch does); labelled and weak
    views get the weak augmentation, the third view the strong one. Validation at each epoch
    end selects the best weights (the paper: a fixed number of steps, best validation epoch
    kept); ``patience`` > 0 additionally stops early.
    """

    name = "fixmatch"
    param_choices = {"variant": ("two-head", "one-head", "single"),
                     "backbone": ("resnet18", "convnet", "convnet_small", "vgg16_bn"),
                     "mixed_precision": ("auto", "bf16", "off"), "optimizer": ("sgd", "adam"),
                     "schedule": ("cosine", "constant"), "weak_forward": ("joint", "no_grad"),
                     "mask_mode": ("paper", "per_label"), "augment": ("weak", "none"),
                     "monitor": ("f1", "loss")}
    param_help = {
        "variant": "two-head (paper's best), one-head (sigmoid pseudo-labels) or single (softmax FixMatch)",
        "init_checkpoint": "PICA / DeepCluster checkpoint whose trunk to start from ('' = random init)",
        "init_run": "or: the project run whose checkpoint to start from (0 = none)",
        "backbone": "trunk when starting at random (a checkpoint's own backbone wins)",
        "small_input": "ResNet stem chosen for the input size (3x3 up to 40 px, 3x3 stride 2 up to 96, then "
                       "ImageNet's); off: ImageNet stem; a checkpoint's own wins",
        "input_size": "resize images to this many pixels square on load (0: the init checkpoint's, else as stored)",
        "mixed_precision": "auto: bf16 on CUDA, float32 on CPU; bf16: bf16 on both; off: float32",
        "epochs": "epochs of steps_per_epoch steps (the paper: 5000 steps in all)",
        "steps_per_epoch": "steps between validations (0 = one pass over the unlabelled images)",
        "patience": "stop after this many validations without improvement (0 = never, as the paper)",
        "batch_size": "labelled images per step",
        "mu": "unlabelled images per labelled image in a step",
        "threshold": "confidence tau above which a pseudo-label is used",
        "T": "temperature of the pseudo-label distribution",
        "lambda_u": "weight of the unlabelled loss",
        "mask_mode": "one-head: paper (one mask per image) or per_label (the assumed reference formula)",
        "n_combinations": "two-head: most frequent label combinations kept as classes (0 = all seen)",
        "lr": "learning rate (FixMatch: SGD 0.03; the ultrasound paper: Adam 1e-4)",
        "weight_decay": "weight decay (FixMatch: 5e-4; SGD: weights only, not biases / batch norm)",
        "optimizer": "sgd (Nesterov momentum, as FixMatch) or adam (the ultrasound paper)",
        "momentum": "SGD momentum (FixMatch: 0.9)",
        "schedule": "cosine: FixMatch's decay lr * cos(7 pi k / 16 K) over the run; constant",
        "ema_decay": "evaluate and keep an exponential moving average of the weights (FixMatch: 0.999; 0 = off)",
        "weak_forward": "joint: labelled, weak and strong views in one forward (batch-norm statistics over all, "
                        "as FixMatch); no_grad: the pseudo-labelling view in its own forward without gradient "
                        "(about a third less compute)",
        "label_fraction": "stratified fraction of the training labels used (seeded by seed)",
        "augment": "weak augmentation of labelled images and of the pseudo-labelling view",
        "monitor": "validation figure for model selection: BCE (loss) or weighted F1; BCE by default, because "
                   "on a small validation set F1 saturates near 1 and then picks among near-ties",
        "seed": "seed of initialisation, label subset and batch order",
        "device": "auto / cpu / cuda",
    }

    def __init__(self, *, variant: str = "two-head", init_checkpoint: str = "", init_run: int = 0,
                 backbone: str = "resnet18", small_input: bool = True, input_size: int = 0, epochs: int = 10,
                 steps_per_epoch: int = 0, patience: int = 0, batch_size: int = 16, mu: int = 2,
                 threshold: float = 0.95, T: float = 1.0, lambda_u: float = 1.0, mask_mode: str = "paper",
                 n_combinations: int = 0, lr: float = 0.03, weight_decay: float = 5e-4, optimizer: str = "sgd",
                 momentum: float = 0.9, schedule: str = "cosine", ema_decay: float = 0.999,
                 weak_forward: str = "joint", label_fraction: float = 1.0, augment: str = "weak",
                 monitor: str = "loss", mixed_precision: str = "auto", seed: int = 0, device: str = "auto"):
        self.variant = variant
        self.init_checkpoint = init_checkpoint
        self.init_run = init_run
        self.backbone = backbone
        self.small_input = small_input
        self.input_size = input_size
        self.mixed_precision = mixed_precision
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.patience = patience
        self.batch_size = batch_size
        self.mu = mu
        self.threshold = threshold
        self.T = T
        self.lambda_u = lambda_u
        self.mask_mode = mask_mode
        self.n_combinations = n_combinations
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.momentum = momentum
        self.schedule = schedule
        self.ema_decay = ema_decay
        self.weak_forward = weak_forward
        self.label_fraction = label_fraction
        self.augment = augment
        self.monitor = monitor
        self.seed = seed
        self.device = device

    # ---------------------------------------------------------------- hooks
    def _prepare(self, data) -> None:
        if self.variant not in self.param_choices["variant"]:
            raise ValueError(f"variant must be one of {self.param_choices['variant']}, got {self.variant!r}")
        if self.weak_forward not in self.param_choices["weak_forward"]:
            raise ValueError(f"weak_forward must be 'joint' or 'no_grad', got {self.weak_forward!r}")
        if len(self.labelled_idx_) < 2:
            raise ValueError(f"{len(self.labelled_idx_)} labelled training image(s): FixMatch needs at least 2")
        self.strong_ = _augmenter("strong", self.aug_gen_)
        if self.variant == "two-head":
            self.combinations_ = combination_vocabulary(self.y_[self.labelled_idx_], self.n_combinations)
            self.combo_targets_ = combination_targets(self.y_, self.combinations_)
        elif self.variant == "single":
            self.combinations_ = np.eye(len(self.label_names_), dtype=np.float32)
        else:
            self.combinations_ = np.zeros((0, len(self.label_names_)), dtype=np.float32)

    def _heads(self, n_classes: int) -> dict:
        if self.variant == "two-head":
            return {"combo": len(self.combinations_), "ml": n_classes}
        if self.variant == "single":
            return {"cls": n_classes}
        return {"ml": n_classes}

    def _scores(self, outs: dict) -> torch.Tensor:
        if self.variant == "single":
            return torch.softmax(outs["cls"], dim=1)
        return torch.sigmoid(outs["ml"])

    def _steps_per_epoch(self) -> int:
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        return max(1, len(self.train_idx_) // (self.mu * self.batch_size))

    def _begin_epoch(self, epoch: int, spe: int) -> None:
        self.order_x_ = self._epoch_order(epoch, self.labelled_idx_, spe * self.batch_size, 1)
        self.order_u_ = self._epoch_order(epoch, self.train_idx_, spe * self.mu * self.batch_size, 2)

    def _train_step(self, epoch: int, step: int):
        b, bu = self.batch_size, self.mu * self.batch_size
        ix = self.order_x_[step * b:(step + 1) * b]
        iu = self.order_u_[step * bu:(step + 1) * bu]
        xl = self.x_[torch.from_numpy(ix)].to(self.device_)
        xu = self.x_[torch.from_numpy(iu)].to(self.device_)
        if self.weak_ is not None:
            xl, xw = self.weak_(xl), self.weak_(xu)
        else:
            xw = xu
        xs = self.strong_(xu) if self.strong_ is not None else xu
        y = torch.from_numpy(self.y_[ix]).to(self.device_)
        # torchrun: each rank forwards its share of the labelled AND of the unlabelled rows (so
        # every rank's batch interleaves both, as the global batch does); the heads' outputs are
        # gathered back into the global [labelled, weak, strong] layout the losses below see
        xl, (xw, xs) = dist.local_batch(xl), dist.local_batch(xw, xs)
        if self.weak_forward == "no_grad":
            # the pseudo-labelling view alone, without gradient (batch-norm statistics of its own)
            with torch.no_grad(), autocast(self.device_, self.mixed_precision):
                _, ow = self.model_(xw)
            with autocast(self.device_, self.mixed_precision):
                _, ols = self.model_(torch.cat([xl, xs]))
            outs = {k: torch.cat([ols[k][:len(xl)], ow[k], ols[k][len(xl):]]) for k in ols}
        else:
            with autocast(self.device_, self.mixed_precision):
                # one forward over the three views: batch-norm statistics over all of them, as FixMatch
                _, outs = self.model_(torch.cat([xl, xw, xs]))
        outs = {k: dist.global_parts(v, (len(xl), len(xw), len(xs))) for k, v in outs.items()}
        split = lambda t: (t[:len(ix)], t[len(ix):len(ix) + len(iu)], t[len(ix) + len(iu):])  # noqa: E731
        kw = dict(T=self.T, threshold=self.threshold, lambda_u=self.lambda_u)
        if self.variant == "single":
            lx, lw, ls = split(outs["cls"])
            terms = fixmatch_loss(lx, y.argmax(1), lw, ls, **kw)
            loss, extra = terms.loss, {}
        elif self.variant == "one-head":
            lx, lw, ls = split(outs["ml"])
            terms = onehead_loss(lx, y, lw, ls, mask_mode=self.mask_mode, **kw)
            loss, extra = terms.loss, {}
        else:
            cx, cw, cs = split(outs["combo"])
            mx, _, _ = split(outs["ml"])
            w = torch.from_numpy(self.combo_targets_[ix]).to(self.device_)
            loss, terms, lbce = twohead_loss(cx, w, mx, y, cw, cs, **kw)
            extra = {"bce": float(lbce.detach())}
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        dist.sync_gradients(self.optimizer_)
        self.optimizer_.step()
        mask_rate = float(terms.mask.float().mean())
        return {"loss": float(loss.detach()), "Lx": float(terms.Lx.detach()),
                "Lu": float(terms.Lu.detach()), "mask": mask_rate, **extra}, len(ix) + len(iu)

    def _extra_state(self) -> dict:
        return {"combinations": np.asarray(getattr(self, "combinations_", np.zeros((0, 0))))}

    def _load_extra_state(self, extra: dict) -> None:
        if "combinations" in extra and getattr(self, "combinations_", None) is None:
            self.combinations_ = np.asarray(extra["combinations"])
        elif "combinations" in extra and not np.array_equal(self.combinations_, extra["combinations"]):
            raise ValueError("resume: the label-combination vocabulary differs from the checkpoint's")

    def load_state_dict(self, state: dict) -> "FixMatch":
        self.combinations_ = None
        return super().load_state_dict(state)
