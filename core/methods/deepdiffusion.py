"""DeepDiffusion (Furuya & Ohbuchi 2022) as used for inner-ear shapes (López Diez et al. 2023).

A PointNet encoder and a trainable memory ``M`` (one row per training shape, the "intrinsic
features") are optimised together with the latent manifold ranking (LMR) loss, so that cosine
distance between features ranks shapes the way diffusion on the feature manifold would.

The loss is a pure function at the top (``lmr_loss``); the method class is below.

Scaling: the reference computes softmax(M M^T) for all N memory rows although only the rows of
the batch's kNN are used. Here only the B rows softmax(f_b M^T) and the B k neighbour rows
softmax(m_n M^T) are formed (``_lmr_neighbours``), so a step costs three (B k) x N x D products
and O(B k N) memory. The reference variant has a hand-written backward: the neighbour rows'
gradient is formed in two fused passes during the forward, and nothing (B k) x N is kept but
one buffer of it.
"""
from __future__ import annotations


import numpy as np

try:  # torch is imported lazily by the registry; importing this module needs it
    import torch
except ImportError as exc:  # pragma: no cover - torch is a hard dependency of the engine
    raise ImportError("core.methods.deepdiffusion needs torch") from exc

from ..device import widen
from ..jobs import Progress, RateMeter
from ..jobs import distributed as dist
from ._lmr_neighbours import CLIP as _CLIP
from ._lmr_neighbours import backward_products, neighbour_terms
from ._lmr_neighbours import workspace as _workspace
from .base import Method



# ====================================================================================== loss
def l2_normalise(h: "torch.Tensor") -> "torch.Tensor":
    """The reference's ``l2normalize``: (h + 1e-8) / sqrt(max(|h + 1e-8|^2, 1e-12))."""
    x = h + 1e-8
    return x / torch.sqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))


def _neighbours(score: "torch.Tensor", k: int):
    """Padded kNN per row: entries >= the k-th largest of the row (ties can give more than k).

    Returns (idx B x K, valid B x K). ``topk`` with K = the largest tie-extended count holds every
    selected entry of every row, because selected entries are >= the k-th value and the others
    are below it; rows with fewer selected entries are padded with unselected ones (valid False).
    """
    n = score.shape[1]
    k = max(1, min(int(k), n))
    with torch.no_grad():
        kth = torch.topk(score, k, dim=1).values[:, -1:]
        mask = score >= kth
        width = int(mask.sum(1).max())
        idx = torch.topk(score, width, dim=1).indices
        valid = mask.gather(1, idx)
    return idx, valid


def _ranking(z: "torch.Tensor"):
    """Softmax, clip to [1e-6, 1], renormalise (tf ``Categorical(probs)``): (P, X, log X, s)."""
    p = torch.softmax(z, dim=-1)
    pc = p.clamp(_CLIP, 1.0)
    s = pc.sum(-1, keepdim=True)
    x = pc / s
    return p, x, torch.log(x), s


def _ranking_backward(g, p, x, s):
    """Gradient through renormalise, clip and softmax (the chain of ``_ranking``)."""
    g = (g - (g * x).sum(-1, keepdim=True)) / s
    g = g * ((p >= _CLIP) & (p <= 1.0))
    return p * (g - (g * p).sum(-1, keepdim=True))


def _norm_clipped(x):
    """The reference's cosine norms: sqrt(clip(|x|^2, 1e-8, 1e8)), where the clip passes, and
    the plain norms."""
    norm = torch.linalg.vector_norm(x, dim=-1)  # one fused pass (vecdot makes an N x D product)
    return norm.clamp(1e-4, 1e4), (norm >= 1e-4) & (norm <= 1e4), norm


class _ReferenceLMR(torch.autograd.Function):
    """Fitting and smoothness terms of takahikof/DeepDiffusion ``define_loss`` on (f, M).

    The batch rows (B x N) are computed here; the (B k) x N neighbour rows, where the time
    goes, in ``_lmr_neighbours``, which also forms their gradient during the forward pass.
    """

    @staticmethod
    def forward(ctx, f, memory, source_idx, k, low_precision=False, weight_grad=True):
        z_b = f @ memory.T                                              # B x N logits
        nf, nf_ok, _ = _norm_clipped(f)
        nm, nm_ok, norms = _norm_clipped(memory)
        sim = (1.0 + z_b / (nf[:, None] * nm[None, :])) / 2.0           # (1 + cos) / 2
        idx, valid = _neighbours(sim, k)
        w = sim.gather(1, idx)
        valid = valid & (w != 0)  # the reference keeps the nonzero entries of the k-sparse matrix
        p_a, a, la, s_a = _ranking(z_b)
        h_a = torch.linalg.vecdot(a, la)
        want_grad = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        d, grads = neighbour_terms(memory, norms, idx, w * valid, a, la, h_a, want_grad=want_grad,
                                   low_precision=low_precision)
        d = d * valid
        smooth = (w * d).sum()
        lse = torch.logsumexp(z_b, dim=1)
        fit = (lse - z_b.gather(1, source_idx[:, None]).squeeze(1)).sum()
        ctx.weight_grad = bool(weight_grad)
        if want_grad:
            g_a, ctx.grad_rows, ctx.m_op, ctx.lease = grads  # work buffers, not checked for
            # in-place use: backward writes the batch rows of grad_rows each time, reads the rest
            ctx.save_for_backward(f, memory, source_idx, z_b, nf, nf_ok, nm, nm_ok, idx, w, d,
                                  p_a, a, s_a, g_a)
        return fit, smooth

    @staticmethod
    def backward(ctx, g_fit, g_smooth):
        (f, memory, source_idx, z_b, nf, nf_ok, nm, nm_ok, idx, w, d,
         p_a, a, s_a, g_a) = ctx.saved_tensors
        b = idx.shape[0]
        g_zb = _ranking_backward(g_a * g_smooth, p_a, a, s_a)
        # fitting term: softmax - onehot
        soft = torch.softmax(z_b, dim=1)
        soft[torch.arange(b, device=f.device), source_idx] -= 1.0
        g_zb += g_fit * soft
        # the weights (1 + cos) / 2 carry gradient too (into the logits and both norms)
        g_w = g_smooth * d if ctx.weight_grad else torch.zeros_like(d)  # zero where invalid
        nm_sel = nm[idx]
        z_sel = z_b.gather(1, idx)
        t = g_w / (2.0 * nf[:, None] * nm_sel)                          # d sim / d z
        g_zb.scatter_add_(1, idx, t)
        tz = t * z_sel
        g_nf = -(tz / nf[:, None]).sum(1) * nf_ok
        g_nm_sel = -(tz / nm_sel) * nm_ok[idx]
        # logits f M^T and M[idx] M^T: both products at once
        grad_m, grad_f, g_q = backward_products(ctx.grad_rows, ctx.m_op, g_zb, f, memory, idx, g_smooth)
        grad_f += (g_nf / nf)[:, None] * f
        g_q += (g_nm_sel / nm_sel).reshape(-1, 1) * memory.index_select(0, idx.reshape(-1))
        grad_m.index_add_(0, idx.reshape(-1), g_q)
        return grad_f, grad_m, None, None, None, None


def _paper_lmr(f, memory, source_idx, k, weight_grad=True):
    """The inner-ear paper's formula: kNN and weights by w = f_b m_n^T, unclipped softmax,
    Jensen-Shannon divergence 0.5 KL(a||m) + 0.5 KL(b||m), m = (a + b) / 2, sums over the batch."""
    z_b = f @ memory.T
    idx, valid = _neighbours(z_b, k)
    b, kk = idx.shape
    w = z_b.gather(1, idx) * valid
    if not weight_grad:
        w = w.detach()
    a = torch.softmax(z_b, dim=1)[:, None, :]
    bn = torch.softmax((memory.index_select(0, idx.reshape(-1)) @ memory.T).view(b, kk, -1), dim=-1)
    m = 0.5 * (a + bn)
    lm = torch.log(m)
    js = 0.5 * (a * (torch.log(a) - lm)).sum(-1) + 0.5 * (bn * (torch.log(bn) - lm)).sum(-1)
    smooth = (w * js).sum()
    fit = (torch.logsumexp(z_b, 1) - z_b.gather(1, source_idx[:, None]).squeeze(1)).sum()
    return fit, smooth


def lmr_loss(h, memory, source_idx, k: int, lam: float, variant: str = "reference",
             precision: str = "float32", *, temperature: float = 1.0, normalize_memory: bool = False,
             weight_gradient: bool = True):
    """Latent manifold ranking loss. Returns ``(loss, loss_fitting, loss_smoothness)``.

    ``h``: B x D encoder output before l2 normalisation; ``memory``: N x D intrinsic features;
    ``source_idx``: B indices of each sample's own memory row (its diffusion source).
    loss = loss_fitting + lam * loss_smoothness, both summed over the batch.

    ``variant="reference"`` is takahikof/DeepDiffusion: kNN = entries >= the k-th largest
    (1 + cos) / 2 similarity (ties kept), weights = those similarities (with gradient),
    ranking vectors softmax clipped to [1e-6, 1] and renormalised, dissimilarity = KL(a||b) +
    KL(b||a). ``variant="paper"`` is the inner-ear paper's formula: kNN and weights by the dot
    product f_b m_n^T, plain softmax, Jensen-Shannon divergence.

    Computed in float32 or wider (autocast is switched off inside). ``precision="bfloat16"``
    (reference variant) runs the memory products of the neighbour rows with bfloat16 operands
    and float32 accumulation (AMX on recent Intel CPUs, tensor cores on GPUs); the neighbour
    logits and their gradient rows are rounded to bfloat16, which puts ~1e-4 to 1e-2 relative
    error into the memory's gradient. The batch rows, the fitting term and the products for the
    gradient into ``h`` stay in float32. The default is exact.

    ``temperature`` tau and ``normalize_memory`` (defaults 1.0 and False: the reference) turn the
    logits into scaled cosines, as instance-discrimination methods use them: the memory rows are
    l2-normalised in the forward pass (the gradient flows through the normalisation into the
    stored rows) and every logit f m^T and m_n M^T is divided by tau. This is done by scaling f
    and M by tau^-1/2 before the loss, so the (1 + cos) / 2 kNN weights are unchanged and the
    same kernels run.

    ``weight_gradient`` (default True: both references) lets the gradient flow through the kNN
    weights of the smoothness term. Minimising sum w d through w lowers w, i.e. pushes each
    feature away from its nearest memory rows; False treats the weights as fixed affinities.
    """
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"lmr_loss: precision must be float32 or bfloat16, got {precision!r}")
    if variant not in ("reference", "paper"):
        raise ValueError(f"lmr_loss: unknown variant {variant!r} (reference | paper)")
    if h.ndim != 2 or memory.ndim != 2 or h.shape[1] != memory.shape[1]:
        raise ValueError(f"lmr_loss: h {tuple(h.shape)} and memory {tuple(memory.shape)} must be "
                         "B x D and N x D")
    src = torch.as_tensor(source_idx, device=h.device).long().reshape(-1)
    if src.shape[0] != h.shape[0]:
        raise ValueError(f"lmr_loss: {src.shape[0]} source indices for a batch of {h.shape[0]}")
    with torch.autocast(device_type=h.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(h.dtype, memory.dtype), torch.float32)
        f = l2_normalise(h.to(dtype))
        mem = memory.to(dtype)
        if normalize_memory:
            mem = torch.nn.functional.normalize(mem, dim=1, eps=1e-12)
        if float(temperature) != 1.0:
            if not float(temperature) > 0:
                raise ValueError(f"lmr_loss: temperature must be > 0, got {temperature!r}")
            scale = float(temperature) ** -0.5
            f, mem = f * scale, mem * scale
        if variant == "reference":
            fit, smooth = _ReferenceLMR.apply(f, mem, src, int(k), precision == "bfloat16",
                                              bool(weight_gradient))
        else:
            fit, smooth = _paper_lmr(f, mem, src, int(k), bool(weight_gradient))
    return fit + lam * smooth, fit, smooth


# ====================================================================================== method
def release_loss_workspace() -> None:
    """Free the work buffers the LMR loss keeps between steps."""
    _workspace.clear()


def _as_points(data, where: str = "DeepDiffusion"):
    x = data.x if hasattr(data, "x") else data
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{where}: expected point clouds N x P x 3 (the project's 'points' array, "
                         f"from core.preprocess.shapes.compute_points), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: point clouds contain NaN or inf values")
    return x


class DeepDiffusion(Method):
    """PointNet + latent manifold ranking, trained without labels on point clouds.

    Hyperparameters (scikit-learn style, stored under the same names):
    ``epochs``, ``batch_size`` (public code: 16; paper: 8), ``lr`` (Adam learning rate; default 1e-4 as in both
    public implementations: the inner-ear paper's 1e-8 is almost surely a typo, nothing
    trains at that rate), ``lam`` and ``k`` (LMR balance and kNN size; public code: 1.0 and 20, paper: 0.6 and 10),
    ``out_dim`` (feature size; paper: 254), ``augment`` (the paper's affine augmentation with
    probability 0.8), ``seed``, ``device`` ("auto" = CUDA with bf16 autocast when present),
    ``eval_every`` (retrieval mAP on the labelled val split every that many epochs; 0 = never),
    ``loss_variant`` ("reference" = takahikof/DeepDiffusion's loss, "paper" = the paper's formula),
    ``mixed_precision`` ("auto" = bf16 autocast on CUDA only; "bf16" = on the CPU too, where AMX
    makes an epoch ~1.4x faster; "off"). Under bf16 the LMR loss's memory products use
    bf16 operands too (``lmr_loss(precision="bfloat16")``); everything else in it is float32.
    ``temperature``, ``normalize_memory``, ``memory_lr``, ``memory_init``, ``memory_update``,
    ``memory_momentum``, ``lr_schedule``, ``warmup_epochs``, ``lam_warmup``, ``train_points``,
    ``precise_bn``, ``weight_gradient``: see below and ``param_help``.

    The memory (one row per training sample) is initialised from a first forward pass over all
    training samples (l2-normalised, reported as progress) and then trained by Adam with the
    encoder. Each epoch drops the last incomplete batch, as the reference does (BatchNorm needs
    >= 2). Learned state: ``encoder_``, ``memory_``, ``train_ids_``.

    **Defaults**: the reference's (``DeepDiffusion.REFERENCE``; the loss variants match every
    reference vector at ``temperature=1, normalize_memory=False, weight_gradient=True``): each
    alternative below was measured and retrieved worse in short runs (ModelNet10, 1,000
    training shapes, 256 points, class-balanced test mAP; ``bench/deepdiffusion.py``, README).
    Batch 16, k 20 and lambda 1.0 are the public code's, not the paper's 8 / 10 / 0.6: with the
    paper's three the curve stays *below* the untrained encoder (0.458 after 5 epochs on the
    CPU subset against 0.532; on an H200, full split, 0.386 / 0.418 / 0.467 / 0.452 after
    5 / 10 / 15 / 20 epochs against 0.58-0.62 for the public code's settings).
    What to expect on ModelNet10 as voxelised in ``../shared`` (24^3): 0.62-0.63 after 30 epochs,
    where the same PointNet trained with every training label reaches 0.83 (0.82 after 25
    epochs; ``bench/deepdiffusion.py --supervised-epochs``); the public code's ~0.80 is on points
    from the original meshes.

    * ``memory_init`` ("eval" as the reference, or "batch"). The reference fills the memory in
      eval mode, where BatchNorm still has its initial running statistics (mean 0, variance 1):
      all rows come out nearly the same vector (mean pairwise cosine 0.9999; the softmax over
      the memory is uniform, the fitting term stays at ~1.00 x log N for 10 epochs) and the
      learned space stays nearly collapsed (the sample project's neighbour cosine distances
      ~0.005). "batch" runs that pass in train mode (batch statistics, no gradient) and leaves
      the running statistics at their average over the pass: memory cosine 0.33, untrained
      encoder 0.532 vs 0.511, the sample project's neighbour distances 0.18 (median), but the
      learning curve is lower: 0.427 / 0.419 / 0.441 after 2 / 4 / 6 epochs against the
      reference's 0.487 / 0.516 / 0.553 (0.573 after 10). The sample project uses "batch"
      (4 epochs: retrieval equal, 0.530 vs 0.527, and a space that is not collapsed).
    Options measured and *not* made the default (same subset; ``DeepDiffusion.INSTANCE`` names
    the instance-discrimination set):

    * ``normalize_memory=True`` with ``temperature=0.1`` (cosine logits over a temperature, as
      instance-discrimination methods use them; with the reference's unit f and m the logits lie
      in [-1, 1], the softmax over N rows is nearly uniform and the fitting term stays at
      0.99-1.00 x log N for 10 epochs). With the smoothness term on (lam 0.6) the sharp rankings
      make it dominate and pull every feature together: memory mean cosine 0.37 -> 0.67 and the
      encoder's features 0.20 -> 0.62 in 3 epochs, test mAP 0.30 after 2 epochs (0.319 last
      session, whose memory was also trained by Adam at 1e-4). The same with the kNN weights
      held constant (``weight_gradient=False``) collapses as fast (memory cosine 0.49 after one
      epoch), so it is the ranking term's pull, not the weights' gradient.
    * ``memory_update="momentum"`` (NPID: m <- normalise(0.5 m + 0.5 f), no gradient into the
      memory), ``lam=0``, batch 32, Adam 1e-3 with one warm-up epoch and cosine decay
      (``INSTANCE``): no collapse (memory cosine 0.31-0.41) and the fitting term falls to 0.59 x
      log N in 6 epochs, but retrieval does not rise: 0.465 / 0.510 / 0.512 after 2 / 4 / 6
      epochs (a 6-epoch schedule), 0.500 after 5 epochs of a 30-epoch schedule.
      ``train_points`` (a fresh random 256 of 1,024 stored points per step): no change
      (0.499 after 3 epochs, fitting term 0.80 x log N as without it).
    * ``lr=1e-3`` with the reference's loss: the encoder's features collapse (mean cosine
      0.63), test mAP 0.28 after 2 epochs.
    * ``precise_bn=True`` (BatchNorm statistics recomputed over the training shapes before
      embedding): untrained encoder 0.511 -> 0.532, but after the reference's training neutral
      to worse (0.532 vs 0.530 after 5 epochs, 0.573 vs 0.563 after 10).
    * ``temperature`` 0.1-0.2 with ``normalize_memory`` and a small ``lam`` (0.03-0.3): stable,
      a little faster early (0.545 against 0.516 at epoch 4) and equal at epoch 10 (0.56-0.58
      against 0.573). From the batch-statistics start the same settings fall below the
      untrained encoder (0.43-0.47): the smoothness term follows the untrained encoder's kNN
      graph, wrong-class about half the time, and pulls the features together.
    * ``memory_lr`` (Adam moves every memory element ~lr per step whatever its gradient):
      1e-3 with lr 1e-3 was worse than 1e-4 in the same short runs; 1e-3 with the encoder at
      the reference's 1e-4 also (0.473 against 0.532 after 5 epochs). On the full training split
      (4x the steps per epoch) the curve per epoch is the subset's (0.586 against 0.603 after 20
      epochs): the pace is set by epochs, i.e. by how often each memory row is fitted.
    ``lr_schedule``, ``warmup_epochs`` and ``lam_warmup`` exist for these runs; the reference
    uses none of them.
    * every epoch reports the fitting term relative to log N, the memory's and the epoch's
      features' mean pairwise cosine and effective rank, and the val mAP when labels exist; the
      progress message starts with "WARNING" when the encoder's features ("embedding collapsed":
      the map shows them) or the memory ("memory collapsed", the reference's start) have
      collapsed (mean cosine > 0.98 or effective rank < 2), the fitting term has not moved
      (< 1 % of its first value) or is above log N (diverging).
    """

    name = "deepdiffusion"
    input_kind = "points"
    param_choices = {"loss_variant": ("reference", "paper"), "mixed_precision": ("auto", "bf16", "off"),
                     "memory_init": ("batch", "eval"), "memory_update": ("gradient", "momentum"),
                     "lr_schedule": ("constant", "cosine")}
    param_help = {
        "epochs": "passes over the training shapes",
        "batch_size": "shapes per step (public code: 16; paper: 8)",
        "lr": "Adam learning rate (paper prints 1e-8: a typo; public code uses 1e-4)",
        "lam": "weight of the smoothness term (public code: 1.0; paper: 0.6)",
        "k": "neighbours in the latent manifold ranking (public code: 20; paper: 10)",
        "out_dim": "feature dimension (paper: 254)",
        "augment": "random affine augmentation with probability 0.8",
        "seed": "random seed (runs repeat exactly on the CPU)",
        "device": "auto | cpu | cuda",
        "eval_every": "retrieval mAP on the val split every N epochs (0: never)",
        "loss_variant": "reference (original code) or paper (formula as printed)",
        "mixed_precision": "auto: bf16 on CUDA, float32 on CPU; bf16: also on CPU (AMX); off",
        "temperature": "logits are cosine / temperature (reference: 1.0, plain dot products)",
        "normalize_memory": "l2-normalise the memory rows in every step (reference: off)",
        "memory_lr": "Adam learning rate of the memory (0: the same as lr, as the reference)",
        "memory_init": "batch: memory from a first pass with batch statistics; eval: the "
                       "reference's eval-mode pass (initial BatchNorm statistics)",
        "memory_update": "gradient: the memory is trained by Adam (reference); momentum: "
                         "m <- normalise(mu m + (1 - mu) f) from the batch's features (NPID)",
        "memory_momentum": "mu of the momentum memory update (NPID: 0.5)",
        "lr_schedule": "constant (reference) or cosine (decay to 0 over the run)",
        "warmup_epochs": "linear learning-rate warm-up over this many epochs (0: none)",
        "lam_warmup": "ramp the smoothness weight from 0 to lam over this many epochs (0: none)",
        "train_points": "points per shape in a training step, a fresh random subset each step "
                        "(0: all points)",
        "weight_gradient": "the smoothness term's kNN weights carry gradient (reference: on; it "
                           "pushes features away from their nearest memory rows)",
        "precise_bn": "recompute BatchNorm's running statistics over the training shapes at the "
                      "end of training (and before each val evaluation)",
    }

    #: the settings of takahikof/DeepDiffusion (with its PointNet's inner-ear sizes kept):
    #: ``DeepDiffusion(**DeepDiffusion.REFERENCE)`` trains as the public code does
    REFERENCE = {"batch_size": 16, "k": 20, "lam": 1.0, "lr": 1e-4, "temperature": 1.0,
                 "normalize_memory": False, "memory_lr": 0.0, "memory_init": "eval",
                 "loss_variant": "reference", "memory_update": "gradient", "lr_schedule": "constant",
                 "warmup_epochs": 0.0, "lam_warmup": 0.0, "train_points": 0, "precise_bn": False,
                 "weight_gradient": True}

    #: instance discrimination as NPID does it (cosine logits over temperature 0.1, memory updated
    #: by momentum from the encoder's features, no smoothness term, Adam 1e-3 with warm-up and
    #: cosine decay): measured, not the default (README, issue 12)
    INSTANCE = {"batch_size": 32, "lr": 1e-3, "lam": 0.0, "temperature": 0.1, "normalize_memory": True,
                "memory_init": "batch", "memory_update": "momentum", "memory_momentum": 0.5,
                "lr_schedule": "cosine", "warmup_epochs": 1.0, "precise_bn": True}

    def __init__(self, *, epochs: int = 300, batch_size: int = 16, lr: float = 1e-4, lam: float = 1.0,
                 k: int = 20, out_dim: int = 254, augment: bool = True, seed: int = 0,
                 device: str = "auto", eval_every: int = 10, loss_variant: str = "reference",
                 mixed_precision: str = "auto", temperature: float = 1.0, normalize_memory: bool = False,
                 memory_lr: float = 0.0, memory_init: str = "eval", memory_update: str = "gradient",
                 memory_momentum: float = 0.5, lr_schedule: str = "constant", warmup_epochs: float = 0.0,
                 lam_warmup: float = 0.0, train_points: int = 0, precise_bn: bool = False,
                 weight_gradient: bool = True):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lam = lam
        self.k = k
        self.out_dim = out_dim
        self.augment = augment
        self.seed = seed
        self.device = device
        self.eval_every = eval_every
        self.loss_variant = loss_variant
        self.mixed_precision = mixed_precision
        self.temperature = temperature
        self.normalize_memory = normalize_memory
        self.memory_lr = memory_lr
        self.memory_init = memory_init
        self.memory_update = memory_update
        self.memory_momentum = memory_momentum
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.lam_warmup = lam_warmup
        self.train_points = train_points
        self.precise_bn = precise_bn
        self.weight_gradient = weight_gradient

    # ---------------------------------------------------------------- pieces
    def _check_params(self):
        if self.loss_variant not in self.param_choices["loss_variant"]:
            raise ValueError(f"DeepDiffusion: loss_variant must be reference or paper, got {self.loss_variant!r}")
        for name in ("epochs", "batch_size", "k", "out_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DeepDiffusion: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.memory_init not in self.param_choices["memory_init"]:
            raise ValueError(f"DeepDiffusion: memory_init must be batch or eval, got {self.memory_init!r}")
        if not float(self.temperature) > 0:
            raise ValueError(f"DeepDiffusion: temperature must be > 0, got {self.temperature!r}")
        for name in ("memory_update", "lr_schedule"):
            if getattr(self, name) not in self.param_choices[name]:
                raise ValueError(f"DeepDiffusion: {name} must be one of {self.param_choices[name]}, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 <= float(self.memory_momentum) < 1.0:
            raise ValueError(f"DeepDiffusion: memory_momentum must be in [0, 1), got {self.memory_momentum!r}")
        if float(self.warmup_epochs) < 0 or float(self.lam_warmup) < 0 or int(self.train_points) < 0:
            raise ValueError("DeepDiffusion: warmup_epochs, lam_warmup and train_points must be >= 0")
        if float(self.memory_lr) < 0 or not float(self.lr) > 0:
            raise ValueError(f"DeepDiffusion: lr must be > 0 and memory_lr >= 0, got {self.lr!r}, "
                             f"{self.memory_lr!r}")

    def _build(self):
        from ..device import pick_device
        from ..models.pointnet import PointNetEncoder

        self.device_ = pick_device(self.device)
        torch.manual_seed(int(self.seed))
        self.encoder_ = PointNetEncoder(int(self.out_dim)).to(self.device_)

    def _generator(self, *parts) -> "torch.Generator":
        # One generator per (seed, epoch, step): a resumed run draws exactly what it would have.
        g = torch.Generator()
        g.manual_seed(int(np.random.SeedSequence([int(self.seed), *parts]).generate_state(1)[0]))
        return g

    @torch.no_grad()
    def _features(self, points: np.ndarray, batch: int = 64) -> "torch.Tensor":
        from ..device import autocast

        self.encoder_.eval()
        out = []
        for i in range(0, len(points), batch):
            x = torch.from_numpy(points[i:i + batch]).to(self.device_)
            with autocast(self.device_, self.mixed_precision):
                h = self.encoder_(x)
            out.append(l2_normalise(widen(h)))
        return torch.cat(out) if out else torch.zeros(0, int(self.out_dim), device=self.device_)

    def _batch_features(self, points: np.ndarray, batch: int = 64):
        """Step generator: features of ``points`` from train-mode forward passes (BatchNorm with
        batch statistics, no gradient), l2-normalised, in order. The running statistics are reset
        and set to the average over these batches, so eval mode afterwards normalises like the
        training steps do. Yields (done, total) after each batch; returns the N x D features."""
        from ..device import autocast

        bns = [m for m in self.encoder_.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                      # cumulative average over the pass
        n = len(points)
        # no batch of one (BatchNorm needs two per channel in train mode): the tail joins the last
        bounds = list(range(0, n, batch)) + [n]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2:
            del bounds[-2]
        out = []
        self.encoder_.train()
        try:
            with torch.no_grad(), dist.local_batchnorm():  # torchrun: every rank runs this same pass
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    x = torch.from_numpy(points[lo:hi]).to(self.device_)
                    with autocast(self.device_, self.mixed_precision):
                        h = self.encoder_(x)
                    out.append(l2_normalise(widen(h)))
                    yield hi, n
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        return torch.cat(out)

    def _eval_features(self, points: np.ndarray, batch: int = 64):
        """Step generator as ``_batch_features`` for the reference's eval-mode pass."""
        out = []
        for lo in range(0, len(points), batch):
            out.append(self._features(points[lo:lo + batch], batch))
            yield min(lo + batch, len(points)), len(points)
        return torch.cat(out)

    def _train_batch(self, train_t, idx, epoch: int, step: int):
        """The step's point clouds: all stored points, or a fresh random subset of
        ``train_points`` of them per shape (seeded by epoch and step)."""
        x = train_t[idx]
        tp = int(self.train_points)
        if 0 < tp < x.shape[1]:
            keys = torch.rand(x.shape[0], x.shape[1], generator=self._generator(epoch, step, 2))
            sub = keys.argsort(dim=1)[:, :tp]
            x = x.gather(1, sub[:, :, None].expand(-1, -1, 3))
        return x.to(self.device_)

    def _lam_at(self, global_step: int, spe: int) -> float:
        """lam, ramped linearly from 0 over ``lam_warmup`` epochs."""
        ramp = float(self.lam_warmup) * spe
        return float(self.lam) * (min(1.0, global_step / ramp) if ramp > 0 else 1.0)

    def _set_lr(self, global_step: int, spe: int, n_epochs: int) -> None:
        """Learning rates of this step: linear warm-up over ``warmup_epochs``, then constant or
        cosine decay to 0 at the end of the run (from the step count, so a resumed run repeats)."""
        warm = float(self.warmup_epochs) * spe
        total = max(1, n_epochs * spe)
        factor = min(1.0, (global_step + 1) / warm) if warm > 0 else 1.0
        if self.lr_schedule == "cosine":
            factor *= 0.5 * (1.0 + np.cos(np.pi * min(global_step, total) / total))
        base = (float(self.lr), float(self.memory_lr) or float(self.lr))
        for group, lr in zip(self.optimizer_.param_groups, base):
            group["lr"] = lr * factor

    @torch.no_grad()
    def _momentum_update(self, idx, h) -> None:
        """NPID's memory update: m_i <- normalise(mu m_i + (1 - mu) f_i) for the batch's rows."""
        mu = float(self.memory_momentum)
        m = self.memory_.data
        m[idx] = torch.nn.functional.normalize(mu * m[idx] + (1.0 - mu) * l2_normalise(h), dim=1)

    def _recompute_bn(self, train_x):
        """Step generator: BatchNorm's running statistics set to their average over one
        train-mode pass over the training shapes (no gradient; the weights do not change)."""
        yield from self._batch_features(train_x)

    def _make_optimizer(self):
        mem_lr = float(self.memory_lr) or float(self.lr)
        self.optimizer_ = torch.optim.Adam([{"params": list(self.encoder_.parameters())},
                                            {"params": [self.memory_], "lr": mem_lr}], lr=float(self.lr))

    def _resume_optimizer(self):
        """Adam for the loaded weights, with the checkpoint's moments (``load_state_dict`` keeps
        them until training resumes; checkpoints before the memory's own group: fresh Adam)."""
        self._make_optimizer()
        opt, self._optimizer_state = getattr(self, "_optimizer_state", None), None
        if opt is not None and len(opt.get("param_groups", [])) == len(self.optimizer_.param_groups):
            self.optimizer_.load_state_dict(opt)

    def _memory_health(self, features=None) -> dict:
        """Collapse indicators of the memory (l2-normalised rows, as the loss sees them) and,
        when given, of the encoder's features of the epoch's training batches."""
        from ..metrics.collapse import embedding_health

        out = {}
        with torch.no_grad():
            m = torch.nn.functional.normalize(self.memory_.detach().float(), dim=1).cpu().numpy()
        for key, x in (("memory", m), ("features", features)):
            if x is None:
                continue
            if len(x) > 4096:  # a fixed subset keeps this O(1) per epoch at large N
                x = x[np.random.default_rng(0).choice(len(x), 4096, replace=False)]
            h = embedding_health(x)
            out.update({f"{key}_mean_cosine": h.mean_cosine, f"{key}_effective_rank": h.effective_rank,
                        f"{key}_collapsed": float(h.collapsed)})
        return out

    def _evaluate(self, val_x, val_y) -> dict:
        from ..metrics.retrieval import retrieval_map

        feats = self._features(val_x).cpu().numpy()
        r = retrieval_map(feats, val_y, curve=False)
        return {"val_map": r.map, "val_map_balanced": r.map_balanced}

    # ---------------------------------------------------------------- the contract
    def steps(self, data, *, resume: dict | None = None):
        from ..device import autocast, seed_everything, uses_bf16
        from ..preprocess.shapes import augment_points_torch

        self._check_params()
        points = _as_points(data)
        split = np.asarray(getattr(data, "split", None) if getattr(data, "split", None) is not None
                           else [""] * len(points))
        ids = np.asarray(getattr(data, "ids", np.arange(len(points)).astype(str)))
        train_mask = split == "train"
        if not train_mask.any():  # no split information: train on everything given
            train_mask = np.ones(len(points), dtype=bool)
        train_x = np.ascontiguousarray(points[train_mask])
        n_train = len(train_x)
        if n_train < 2:
            raise ValueError(f"DeepDiffusion needs at least 2 training shapes, got {n_train}")
        val_x = val_y = None
        y = getattr(data, "y", None)
        if y is not None and int(self.eval_every) > 0:
            labelled = np.asarray(data.labelled)
            vmask = (split == "val") & labelled
            if vmask.sum() >= 2:
                val_x, val_y = points[vmask], np.asarray(data.class_index)[vmask]

        seed_everything(int(self.seed))
        self._build()
        if resume is not None:
            self.load_state_dict(resume)
            if int(resume.get("n_train", n_train)) != n_train:
                raise ValueError(f"DeepDiffusion: checkpoint was trained on {resume['n_train']} shapes, "
                                 f"the data has {n_train} training shapes")
            self._resume_optimizer()
        bs = min(int(self.batch_size), n_train)
        spe = max(1, n_train // bs)
        n_epochs = int(self.epochs)
        if resume is None:
            # the memory: one forward pass over all training shapes (minutes at thousands of
            # shapes), reported as it goes; step 0 of epoch 0
            mode = "batch statistics" if self.memory_init == "batch" else "eval mode"
            init = self._batch_features(train_x) if self.memory_init == "batch" else self._eval_features(train_x)
            meter0 = RateMeter()
            while True:
                try:
                    done, total = next(init)
                except StopIteration as stop:
                    feats = stop.value
                    break
                rate, _ = meter0.update(64)
                yield Progress(epoch=0, step=0, global_step=0, n_epochs=n_epochs, steps_per_epoch=spe,
                               samples_per_s=rate, eta_s=(total - done) / max(rate, 1e-9),
                               message=f"initialising memory ({mode}): {done}/{total} shapes")
            self.memory_ = torch.nn.Parameter(widen(feats).contiguous())
            self._make_optimizer()
            self.epoch_, self.step_, self.global_step_ = 0, 0, 0
            self.train_ids_ = ids[train_mask]
            health = self._memory_health()
            yield Progress(epoch=0, step=0, global_step=0, n_epochs=n_epochs, steps_per_epoch=spe,
                           metrics=health, message=self._health_message(health, "memory initialised"))
        self.n_train_ = n_train
        log_n = float(np.log(n_train))
        meter = RateMeter(total_steps=n_epochs * spe - self.global_step_)
        train_t = torch.from_numpy(train_x)
        loss_precision = "bfloat16" if uses_bf16(self.device_, self.mixed_precision) else "float32"
        fit_first = None
        dist.prepare_all(self.encoder_)  # torchrun: global-batch BatchNorm, rank 0's weights
        try:
            while self.epoch_ < n_epochs:
                epoch = self.epoch_
                fit_sum, fit_n, epoch_f = 0.0, 0, []
                perm = torch.randperm(n_train, generator=self._generator(epoch))
                for step in range(self.step_, spe):
                    idx = perm[step * bs:(step + 1) * bs]
                    x = self._train_batch(train_t, idx, epoch, step)
                    if self.augment:
                        x = augment_points_torch(x, generator=self._generator(epoch, step, 1), p=0.8)
                    # torchrun: this rank's rows of the global batch (the memory is whole on every rank)
                    x, idx_r = dist.local_batch(x, idx)
                    self.encoder_.train()
                    with autocast(self.device_, self.mixed_precision):
                        h = self.encoder_(x)
                    momentum = self.memory_update == "momentum"  # then the memory takes no gradient
                    loss, fit, smooth = lmr_loss(widen(h), self.memory_.detach() if momentum else self.memory_,
                                                 idx_r.to(self.device_), int(self.k),
                                                 self._lam_at(self.global_step_, spe), variant=self.loss_variant,
                                                 precision=loss_precision,
                                                 temperature=float(self.temperature),
                                                 normalize_memory=bool(self.normalize_memory),
                                                 weight_gradient=bool(self.weight_gradient))
                    self.optimizer_.zero_grad(set_to_none=True)
                    loss.backward()
                    dist.sync_gradients(self.optimizer_, reduce="sum")  # the loss sums over rows
                    self._set_lr(self.global_step_, spe, n_epochs)
                    self.optimizer_.step()
                    loss, fit, smooth = dist.sum_over_ranks(loss, fit, smooth)  # the global batch's
                    h = dist.global_batch(h.detach())
                    if momentum:
                        self._momentum_update(idx.to(self.device_), widen(h.detach()))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"DeepDiffusion: loss became {loss.item()} at epoch {epoch}, "
                                                 f"step {step}; lower lr")
                    last = step + 1 == spe
                    self.global_step_ += 1
                    self.epoch_, self.step_ = (epoch + 1, 0) if last else (epoch, step + 1)
                    # fitting term per sample relative to log N (1.0 = uniform softmax, nothing fitted)
                    fit_rel = fit.item() / (len(idx) * log_n)
                    fit_first = fit_rel if fit_first is None else fit_first
                    fit_sum, fit_n = fit_sum + fit_rel, fit_n + 1
                    epoch_f.append(widen(h.detach()))
                    metrics, message = {}, ""
                    if last:
                        feats = l2_normalise(torch.cat(epoch_f)).cpu().numpy()
                        metrics = {"fit_rel_logn": fit_sum / fit_n, **self._memory_health(feats)}
                        due = val_x is not None and ((epoch + 1) % int(self.eval_every) == 0
                                                     or epoch + 1 == n_epochs)
                        if self.precise_bn and (due or epoch + 1 == n_epochs):
                            for _ in self._recompute_bn(train_x):  # ~1/3 of an epoch, no gradient
                                pass
                        if due:
                            metrics.update(self._evaluate(val_x, val_y))
                        message = self._health_message(metrics, f"epoch {epoch + 1}", fit_first)
                    rate, eta = meter.update(len(idx))
                    yield Progress(epoch=epoch, step=step + 1, global_step=self.global_step_,
                                   n_epochs=n_epochs, steps_per_epoch=spe,
                                   losses={"loss": loss.item(), "fit": fit.item(), "smooth": smooth.item()},
                                   metrics=metrics, samples_per_s=rate, eta_s=eta, epoch_end=last,
                                   message=message)
        finally:  # the loss's work buffers (hundreds of MB at a large N) go with the run
            release_loss_workspace()

    #: warning thresholds: memory rows this aligned, or of this low an effective rank, are a
    #: collapsed space; a fitting term within this fraction of its first value has not moved
    WARN_MEAN_COSINE = 0.98
    WARN_EFFECTIVE_RANK = 2.0
    WARN_FIT_STILL = 0.01

    @classmethod
    def _health_message(cls, metrics: dict, head: str, fit_first: float | None = None) -> str:
        """One line for the progress bar / training panel; starts with "WARNING" when the
        encoder's features or the memory have collapsed, or the fitting term has not moved or
        diverges."""
        warn = []

        def collapsed(key):
            c, r = metrics.get(f"{key}_mean_cosine"), metrics.get(f"{key}_effective_rank")
            bad = c is not None and (bool(metrics.get(f"{key}_collapsed")) or not np.isfinite(c)
                                     or c > cls.WARN_MEAN_COSINE or r < cls.WARN_EFFECTIVE_RANK)
            return bad, c, r

        feat_bad, fc, fr = collapsed("features")
        mem_bad, mc, mr = collapsed("memory")
        # the map shows the encoder's features: only their collapse is an "embedding collapsed";
        # the memory is the loss's internal state (the reference starts it collapsed and the
        # encoder still learns), so its collapse is named as such, with the features beside it
        if feat_bad:
            warn.append(f"embedding collapsed (encoder's features: mean cosine {fc:.4f}, effective rank "
                        f"{fr:.1f}): all shapes look nearly alike (cosine distances near 0)")
        if mem_bad:
            spread = (f"; the map's features are spread (mean cosine {fc:.3f})"
                      if fc is not None and not feat_bad else "")
            warn.append(f"memory collapsed (mean cosine {mc:.4f}, effective rank {mr:.1f}): its rows "
                        f"are nearly alike, so the fitting term cannot tell shapes apart{spread}")
        fit = metrics.get("fit_rel_logn")
        if fit is not None and fit_first is not None and abs(fit_first - fit) < cls.WARN_FIT_STILL * fit_first:
            warn.append(f"fitting term has not moved ({fit:.3f} x log N, first step {fit_first:.3f}): "
                        "not learning")
        elif fit is not None and fit > 1.5:
            warn.append(f"fitting term {fit:.2f} x log N, worse than no fit at all: diverging, lower lr")
        parts = [head]
        if fit is not None:
            parts.append(f"fit {fit:.3f} x log N")
        if mc is not None:
            parts.append(f"memory cosine {mc:.3f}, rank {mr:.1f}")
        if "val_map_balanced" in metrics:
            parts.append(f"val mAP {metrics['val_map_balanced']:.3f}")
        text = ", ".join(parts)
        return ("WARNING: " + "; ".join(warn) + " | " + text) if warn else text

    def transform(self, data) -> np.ndarray:
        """l2-normalised features (N x out_dim float32) for any point clouds, seen or not."""
        if getattr(self, "encoder_", None) is None:
            raise RuntimeError("DeepDiffusion.transform: fit the method or load a checkpoint first")
        return self._features(_as_points(data, "DeepDiffusion.transform")).cpu().numpy().astype(np.float32)

    def state_dict(self) -> dict:
        opt = getattr(self, "optimizer_", None)  # None after load_state_dict until training resumes
        opt = opt.state_dict() if opt is not None else getattr(self, "_optimizer_state", None)
        return {"params": self.get_params(), "encoder": self.encoder_.state_dict(),
                "memory": self.memory_.detach().cpu(), "optimizer": opt,
                "epoch": self.epoch_, "step": self.step_, "global_step": self.global_step_,
                "n_train": self.n_train_, "train_ids": [str(s) for s in self.train_ids_],
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> "DeepDiffusion":
        for key in ("encoder", "memory", "epoch", "step"):
            if key not in state:
                raise ValueError(f"DeepDiffusion checkpoint has no {key!r} entry")
        if getattr(self, "encoder_", None) is None:
            self._build()
        self.encoder_.load_state_dict(state["encoder"])
        self.memory_ = torch.nn.Parameter(state["memory"].to(self.device_).float().contiguous())
        # Adam is built when training resumes (``steps``), not here: embedding and placing with
        # a loaded run never need it, and building it imports torch._dynamo (seconds, cold)
        self.optimizer_ = None
        self._optimizer_state = state.get("optimizer")
        self.epoch_, self.step_ = int(state["epoch"]), int(state["step"])
        self.global_step_ = int(state.get("global_step", 0))
        self.n_train_ = int(state.get("n_train", self.memory_.shape[0]))
        self.train_ids_ = np.asarray(state.get("train_ids", []), dtype=str)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        return self
