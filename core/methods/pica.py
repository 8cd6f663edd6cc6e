"""PICA (Huang et al. 2020) with the ultrasound paper's symmetric-Dirichlet prior (Dadoun et al.).

The loss is a pure function at the top; the ``PICA`` method class below trains a shared trunk
with an over-clustering head and a target-cluster head, alternately (one pass over the data per
head per epoch, as PICA's ``main.py::train``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["pui_loss", "PICA"]


def pui_loss(logits_orig: torch.Tensor, logits_pert: torch.Tensor, lam: float = 2.0,
             prior: str = "entropy", alpha: float | None = None):
    """PICA's partition-uncertainty loss plus a cluster-size prior. Returns ``(loss, loss_pui, loss_prior)``.

    ``logits_orig`` (n x K) are the head's logits on the original images, ``logits_pert``
    (r*n x K) on perturbed copies. When r > 1 the perturbed batch must be r consecutive copies
    of the batch (``[1..n, 1..n, ...]``, PICA's ``RepeatSampler``) and the original
    probabilities are tiled r times to match, as the reference does.

    PUI = cos between cluster columns of P_orig and P_pert (K x K), ``loss_pui`` = mean cross
    entropy of its rows against the diagonal (paper eqs. 1-3, no temperature). The prior is on
    z = column sums of P_orig / their total:

    * ``"entropy"``: L_NE = log K - H(z) (PICA; eq. 4);
    * ``"dirichlet"``: L_SD = -(alpha - 1) / log K * sum_k log z_k (eq. 6), the negative
      log-density of a symmetric Dirichlet(alpha) up to a constant. ``alpha`` defaults to 1.5
      (the paper asks for "1 + epsilon" without giving the value it used).

    ``loss = loss_pui + lam * loss_prior``.
    """
    if logits_orig.ndim != 2 or logits_pert.ndim != 2 or logits_orig.shape[1] != logits_pert.shape[1]:
        raise ValueError(f"logits must be n x K and r*n x K, got {tuple(logits_orig.shape)} "
                         f"and {tuple(logits_pert.shape)}")
    n, k = logits_orig.shape
    if n == 0 or logits_pert.shape[0] % n:
        raise ValueError(f"{logits_pert.shape[0]} perturbed rows are not a multiple of {n} originals")
    repeat = logits_pert.shape[0] // n
    # The loss is a handful of K x K operations: float32 even under autocast (bf16 cosines of
    # near-one-hot columns lose the signal).
    x = torch.softmax(logits_orig.float(), dim=1)
    y = torch.softmax(logits_pert.float(), dim=1)
    if repeat > 1:
        x = x.repeat(repeat, 1)

    z = x.sum(0)
    z = z / z.sum()
    if prior == "entropy":
        loss_prior = math.log(k) + torch.special.xlogy(z, z).sum()
    elif prior == "dirichlet":
        a = 1.5 if alpha is None else float(alpha)
        # the clamp only guards an exactly empty cluster (log 0); it never binds otherwise
        loss_prior = -(a - 1.0) / math.log(k) * z.clamp_min(1e-30).log().sum()
    else:
        raise ValueError(f"prior must be 'entropy' or 'dirichlet', got {prior!r}")

    pui = F.normalize(x, p=2, dim=0).t() @ F.normalize(y, p=2, dim=0)
    loss_pui = F.cross_entropy(pui, torch.arange(k, device=pui.device))
    return loss_pui + lam * loss_prior, loss_pui, loss_prior
