"""PICA (Huang et al. 2020) with the ultrasound paper's symmetric-Dirichlet prior (Dadoun et al.).

The loss is a pure function at the top; the ``PICA`` method class below trains a shared trunk
with an over-clustering head and a target-cluster head, alternately (one pass over the data per
head per epoch, as PICA's ``main.py::train``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..device import widen
from ..jobs import Progress, RateMeter
from ..jobs import distributed as dist
from .base import Method

__all__ = ["pui_loss", "PICA", "cluster_summary", "collapse_message"]


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
    # The loss is a handful of K x K operations: float32 at least even under autocast (bf16
    # cosines of near-one-hot columns lose the signal).
    x = torch.softmax(widen(logits_orig), dim=1)
    y = torch.softmax(widen(logits_pert), dim=1)
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


# --------------------------------------------------------------------------- the method


def load_images(x, size: int, *, n_epochs: int, what: str, chunk: int = 4096):
    """Resize-on-load with progress: a generator yielding a start-up ``Progress`` (no losses,
    step 0) per chunk of ``chunk`` images and returning the resized images (``resize_images``),
    so a run reports from its first second even when resizing tens of thousands of images."""
    from .augment2d import resize_images

    n = len(x)
    size = int(size or 0)
    target = f"{size} px" if size else "stored size"
    yield Progress(epoch=0, step=0, global_step=0, n_epochs=int(n_epochs),
                   message=f"{what}: loading {n} images ({target})")
    shape = np.shape(x)
    if not size or n == 0 or tuple(shape[-2:]) == (size, size) and len(shape) == 3:
        return resize_images(x, size)
    meter = RateMeter()
    parts = []
    for i in range(0, n, chunk):
        parts.append(resize_images(x[i:i + chunk], size))
        done = min(n, i + chunk)
        rate, _ = meter.update(done - i)
        yield Progress(epoch=0, step=0, global_step=0, n_epochs=int(n_epochs), samples_per_s=rate,
                       eta_s=(n - done) / max(rate or 0.0, 1e-9),
                       message=f"{what}: resizing images to {size} px, {done}/{n}")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _step_generator(seed: int, *parts: int) -> torch.Generator:
    # One generator per (run seed, epoch, head, step): resuming at any step redraws exactly the
    # augmentations an uninterrupted run would have drawn, without saving generator states.
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(p) for p in parts]])
    return torch.Generator().manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> 1))


def n_reference_classes(data) -> int:
    """Classes (single-label) or label combinations (multi-label) present among labelled samples."""
    from ..metrics.clustering import reference_labels

    if data.y is None:
        return 0
    ref = reference_labels(data.y)
    return int(len(np.unique(ref[ref >= 0])))


def epoch_cluster_metrics(data, assign, index=None) -> dict:
    """NMI, Hungarian accuracy, ARI and purity of ``assign`` against the labels of ``data``
    (restricted to ``index`` when given), or {} when nothing there is labelled."""
    from ..metrics.clustering import clustering_scores, reference_labels

    if data.y is None:
        return {}
    ref = reference_labels(data.y)
    if index is not None:
        ref = ref[index]
    ok = ref >= 0
    if ok.sum() < 2:
        return {}
    return clustering_scores(ref[ok], np.asarray(assign)[ok])


def cluster_summary(data, assign, n_clusters: int, index=None) -> dict:
    """Per-epoch clustering figures: ``n_used_clusters`` always; when every one of the
    ``n_clusters`` clusters is used, the scores against the labels (NMI, acc, ARI, purity);
    when fewer are used, ``collapsed`` = 1 and no scores (a collapsed clustering's accuracy
    is only the share of the classes it lumps together, not a result)."""
    used = int(len(np.unique(np.asarray(assign))))
    out = {"n_used_clusters": float(used)}
    if used < int(n_clusters):
        out["collapsed"] = 1.0
        return out
    out.update(epoch_cluster_metrics(data, assign, index))
    return out


def collapse_message(metrics: dict, n_clusters: int, head: str) -> str:
    """One line for the progress bar / training panel; starts with WARNING when collapsed."""
    used = int(metrics.get("n_used_clusters", n_clusters))
    if metrics.get("collapsed"):
        return (f"WARNING: collapsed, {used} of {n_clusters} clusters used (no accuracy reported) | {head}: "
                "try a smaller batch, more epochs or prior=dirichlet")
    parts = [head, f"{used}/{n_clusters} clusters"]
    if "nmi" in metrics:
        parts.append(f"NMI {metrics['nmi']:.3f}, acc {metrics['acc']:.3f}")
    return ", ".join(parts)


class PICA(Method):
    """Deep clustering by partition confidence maximisation, with an optional Dirichlet prior.

    A trunk carries two linear heads: an over-clustering head (``n_overclusters``) and the target
    head (``n_clusters``). For every batch, the original images under the weak scheme and
    ``n_repeat`` copies under the strong scheme go through the trunk and the head(s), and
    ``pui_loss`` is minimised with Adam.

    Beyond PICA, an optional instance-contrastive term (``instance_weight`` > 0; Contrastive
    Clustering's instance head): NT-Xent at temperature 0.5 between the weak view and the first
    strong view of each image, on a 2-layer projection of the trunk features. PICA's loss only
    compares clusters; this term also asks each image's two views to be nearer each other than
    to the batch's other images, which spreads the feature space the clusters are cut from.
    Off by default: it lifted the head and the soft merge on 8,000 OrganAMNIST images but not on
    the full set (numbers at the projector below). Under torchrun its projections are gathered
    from every rank, so its negatives are the global batch's, as on one process.

    Defaults are for a CPU budget (a few epochs on a laptop): the small VGG-style trunk
    ``convnet_small`` (~1/30 of ResNet-18's time per image at 28 px), both heads trained on
    every batch (``head_schedule="joint"``: one trunk pass per batch serves both losses), one
    strong copy, Adam lr 1e-3, and a cluster-size prior weight ``lam=0.1`` instead of PICA's 2.0:
    the entropy prior asks for equal clusters, OrganAMNIST's classes differ 4x in size (liver
    3,285 test images, each femur ~790), and at 2.0 PICA splits the liver in two and merges the
    two femurs and the heart. On 8,000 OrganAMNIST images, 10 epochs
    (``bench/results/pica_lam_8k/``), test acc / NMI for lam 2.0 / 0.5 / 0.25 / 0.1 / 0: 0.497 /
    0.530 / 0.556 / **0.604** / 0.533 (NMI 0.470 / 0.504 / 0.522 / **0.549** / 0.514), and on a
    second seed 0.446 at 2.0 against 0.514 at 0.1; no run collapsed, nor BreastMNIST at 0.1 for
    50 epochs. The papers' settings stay selectable: ``lam=2``, ``backbone="resnet18"``
    (the ultrasound paper), ``head_schedule="alternate"`` (PICA's ``main.py::train``: each
    epoch trains the heads one after the other, one pass of the data each), ``n_repeat=3``,
    ``lr=1e-4`` (both papers, for 100-200 epochs).

    ``n_clusters=0`` takes the number of classes (label combinations for multi-label sets) of
    the labelled samples, or 10 without labels; ``n_overclusters=0`` takes 7 x that (PICA's
    STL-10 setting, 70 over 10). After each epoch the target head's clusters on up to
    ``eval_samples`` samples are counted (``n_used_clusters``) and, when labels exist, scored
    (NMI, Hungarian accuracy, ARI, purity). A clustering that uses fewer clusters than asked is
    reported as collapsed (``collapsed`` = 1, a WARNING message) and gets no scores: its
    "accuracy" would only be the share of the largest class.

    Against collapse (one cluster for every image, the argmax of a fresh head on a random
    trunk) the trunk's features are standardised before the heads (``feature_norm``) and every
    BatchNorm averages its first batches evenly, so an early evaluation in eval mode sees the
    statistics the network trained with. ``input_size`` resizes the images once on load and
    picks the ResNet stem for that size (``small_input``); ``sobel`` feeds Sobel gradients
    (PICA's input) instead of intensities; ``intensity`` sets the strong scheme's brightness /
    contrast / gamma jitter (CT intensities are calibrated, but 0.1 against 0.4 on 8,000
    OrganAMNIST images stays inside the seed spread: ``bench/results/pica_intensity_8k/``);
    ``mixed_precision`` bf16 runs the trunk in bfloat16
    (on CPUs with AMX ~2x faster), the loss stays float32.
    """

    name = "pica"
    input_kind = "image2d"
    param_choices = {"backbone": ("convnet_small", "convnet", "resnet18", "vgg16_bn"), "prior": ("entropy", "dirichlet"),
                     "head_schedule": ("alternate", "joint"),
                     "mixed_precision": ("auto", "bf16", "off")}
    param_help = {
        "input_size": "resize images to this many pixels square on load (0: keep the stored size)",
        "small_input": "ResNet stem chosen for the input size (3x3 up to 40 px, 3x3 stride 2 up to 96, "
                       "then ImageNet's); off: ImageNet stem",
        "sobel": "feed Sobel gradients instead of intensities (PICA's input)",
        "feature_norm": "standardise trunk features before the cluster heads (prevents the one-cluster start)",
        "pool_grid": "pool the trunk's last map to this many cells per side (1: global average; "
                     "3 keeps where things are, e.g. left from right)",
        "mixed_precision": "auto: bf16 on CUDA, float32 on CPU; bf16: bf16 on both; off: float32",
        "backbone": "trunk network",
        "n_clusters": "target clusters (0: number of classes in the labels, else 10)",
        "n_overclusters": "over-clustering head size (0: 7 x n_clusters)",
        "epochs": "passes over the data (each trains both heads)",
        "batch_size": "original images per step",
        "lr": "Adam learning rate",
        "weight_decay": "Adam weight decay",
        "lam": "weight of the cluster-size prior",
        "prior": "entropy (PICA) or dirichlet (ultrasound paper's L_SD)",
        "alpha": "Dirichlet concentration (> 1 favours balanced clusters)",
        "instance_weight": "weight of an instance-contrastive term (NT-Xent between the weak and the first "
                           "strong view, on a projection of the trunk features; 0: PICA alone)",
        "instance_temperature": "temperature of that term",
        "n_repeat": "strongly augmented copies of each image per step",
        "head_schedule": "alternate: one head per pass over the data (PICA); joint: both heads on every batch",
        "crop_scale": "smallest area fraction of the strong scheme's random crop",
        "intensity": "strength of the strong scheme's brightness / contrast / gamma jitter (0: none)",
        "eval_samples": "samples scored against labels after each epoch (0: all)",
        "bn_samples": "images whose statistics set BatchNorm for inference after each epoch (0: running averages)",
        "seed": "random seed",
        "device": "auto, cpu or cuda",
    }

    def __init__(self, *, backbone: str = "convnet_small", input_size: int = 0, small_input: bool = True,
                 sobel: bool = False, feature_norm: bool = True, pool_grid: int = 1, n_clusters: int = 0,
                 n_overclusters: int = 0,
                 epochs: int = 100, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0,
                 lam: float = 0.1, prior: str = "entropy", alpha: float = 1.5, n_repeat: int = 1,
                 instance_weight: float = 0.0, instance_temperature: float = 0.5,
                 head_schedule: str = "joint", crop_scale: float = 0.4, intensity: float = 0.4,
                 eval_samples: int = 5000, bn_samples: int = 2048, mixed_precision: str = "auto", seed: int = 0,
                 device: str = "auto"):
        self.backbone = backbone
        self.input_size = input_size
        self.small_input = small_input
        self.sobel = sobel
        self.feature_norm = feature_norm
        self.pool_grid = pool_grid
        self.mixed_precision = mixed_precision
        self.n_clusters = n_clusters
        self.n_overclusters = n_overclusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lam = lam
        self.prior = prior
        self.alpha = alpha
        self.n_repeat = n_repeat
        self.instance_weight = instance_weight
        self.instance_temperature = instance_temperature
        self.head_schedule = head_schedule
        self.crop_scale = crop_scale
        self.intensity = intensity
        self.eval_samples = eval_samples
        self.bn_samples = bn_samples
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ building
    def _head_sizes(self, data) -> list[int]:
        k = int(self.n_clusters) or n_reference_classes(data) or 10
        k_over = int(self.n_overclusters) or 7 * k
        return [k_over, k]

    def _build(self, head_sizes, in_channels: int = 1, image_size: int = 28, trunk_config: dict | None = None) -> None:
        from ..device import pick_device
        from ..models.backbones2d import build_backbone
        from ..models.heads import ClusterNet

        if self.prior not in ("entropy", "dirichlet"):
            raise ValueError(f"prior must be 'entropy' or 'dirichlet', got {self.prior!r}")
        if self.head_schedule not in ("alternate", "joint"):
            raise ValueError(f"head_schedule must be 'alternate' or 'joint', got {self.head_schedule!r}")
        if int(self.n_repeat) < 1 or int(self.batch_size) < 2:
            raise ValueError("n_repeat must be >= 1 and batch_size >= 2")
        self.device_ = pick_device(self.device)
        torch.manual_seed(int(self.seed))
        self.head_sizes_ = [int(k) for k in head_sizes]
        self.in_channels_ = int(in_channels)
        # what the network was built as; a checkpoint carries it so reloading rebuilds the same
        cfg = trunk_config or {"backbone": self.backbone, "small_input": bool(self.small_input),
                               "input_size": int(image_size), "resize": int(self.input_size or 0), "sobel": bool(self.sobel),
                               "feature_norm": bool(self.feature_norm), "pool_grid": int(self.pool_grid)}
        trunk = build_backbone(cfg["backbone"], in_channels, small_input=cfg["small_input"],
                               input_size=cfg["input_size"], sobel=cfg["sobel"], stem=cfg.get("stem"),
                               pool_grid=cfg.get("pool_grid", 1))
        cfg["stem"] = getattr(trunk, "stem_name", None)
        self.trunk_config_ = cfg
        self.model_ = ClusterNet(trunk, self.head_sizes_, feature_norm=cfg["feature_norm"])
        if float(self.instance_weight) > 0:
            d = trunk.out_dim  # Contrastive Clustering's instance projector: d -> d -> 128
            self.model_.projector = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(),
                                                        torch.nn.Linear(d, 128))
            # measured on 8,000 OrganAMNIST images, 10 epochs, seeds 0 and 1
            # (bench/results/pica_instance_8k/): head acc / NMI 0.493 / 0.508 -> 0.531 / 0.541,
            # the soft merge of the over-clusters 0.494 / 0.530 -> 0.621 / 0.581; on the full data
            # (8 epochs, bench/results/pica_instance_full/) it did not hold: head -0.03 acc, merge
            # -0.10 / -0.03 acc, NMI about even, hence off by default
        self.model_ = self.model_.to(self.device_)
        self.optimizer_ = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.epoch_, self.step_, self.global_step_ = 0, 0, 0
        self.history_: list[dict] = []
        self.epoch_sums_: dict = {}

    # ------------------------------------------------------------------ training
    def steps(self, data, *, resume: dict | None = None):
        from ..device import autocast
        from .augment2d import strong_augment, to_unit_tensor, weak_augment

        n = len(data)
        if n < 2:
            raise ValueError(f"PICA needs at least 2 images, got {n}")
        # resized once, on load, reporting progress from the start
        images = yield from load_images(data.x, int(self.input_size or 0), n_epochs=int(self.epochs), what="PICA")
        if resume is not None:
            self.load_state_dict(resume)
        else:
            x0 = to_unit_tensor(images[:1])
            self._build(self._head_sizes(data), in_channels=x0.shape[1], image_size=max(x0.shape[-2:]))
        bs = min(int(self.batch_size), n)
        n_batches = n // bs  # drop_last: a tiny last batch makes the cluster-size prior meaningless
        yield Progress(epoch=self.epoch_, step=self.step_, global_step=self.global_step_, n_epochs=int(self.epochs),
                       message=(f"PICA: {self.trunk_config_['backbone']} ({self.trunk_config_.get('stem')} stem) "
                                f"built, heads {self.head_sizes_}, {n // bs} batches of {bs}; first step running"))
        n_heads = len(self.head_sizes_)
        joint = self.head_schedule == "joint"
        per_epoch = n_batches if joint else n_heads * n_batches
        meter = RateMeter(max(0, (int(self.epochs) - self.epoch_) * per_epoch - self.step_))
        eval_idx = self._eval_index(n)
        model, opt, dev = self.model_, self.optimizer_, self.device_
        model = self.model_ = dist.prepare(model)  # torchrun: global-batch BN, rank 0's weights
        r = int(self.n_repeat)
        k_target = self.head_sizes_[-1]
        instance = float(self.instance_weight) > 0
        from .ssl_baselines import nt_xent_loss
        while self.epoch_ < int(self.epochs):
            epoch = self.epoch_
            model.train()
            sums = self.epoch_sums_ if self.step_ else {}
            while self.step_ < per_epoch:
                s = self.step_
                head, b = (0, s) if joint else divmod(s, n_batches)
                # joint: every head on each batch (one trunk pass); alternate: one head per pass (PICA)
                heads = list(range(n_heads)) if joint else [head]
                perm = np.random.default_rng([int(self.seed), epoch, head]).permutation(n)
                idx = np.sort(perm[b * bs:(b + 1) * bs])
                g = _step_generator(self.seed, epoch, head, b)
                x = to_unit_tensor(images[idx], dev)
                xo = weak_augment(x, generator=g)
                xp = strong_augment(x.repeat(r, 1, 1, 1), generator=g, **self._strong_kwargs())
                if dist.active():  # this rank's rows of the global batch, augmented as on one process
                    xo, xp = xo[dist.local_rows(len(idx))], xp[dist.local_rows_repeated(len(idx), r)]
                with autocast(dev, self.mixed_precision):
                    los, fo = model(xo, heads=heads, return_features=True)
                    lps, fp = model(xp, heads=heads, return_features=True)
                    if instance:
                        zo, zp = model.projector(fo), model.projector(fp[:len(fo)])
                loss, step_terms = 0.0, []
                if instance:
                    # under torchrun the negatives are the global batch's rows, as on one process
                    zo, zp = dist.gather_rows(zo), dist.gather_rows(zp)
                    l_inst = nt_xent_loss(widen(zo), widen(zp), float(self.instance_temperature))
                    loss = float(self.instance_weight) * l_inst
                for h, lo, lp in zip(heads, los, lps):
                    lo, lp = self._global_batch_logits(lo, lp, r)
                    l_all, l_pui, l_prior = pui_loss(lo, lp, lam=self.lam, prior=self.prior, alpha=self.alpha)
                    loss = loss + l_all
                    step_terms.append((h, l_all, l_pui, l_prior))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                dist.sync_gradients(model)
                opt.step()
                self.step_ += 1
                self.global_step_ += 1
                rate, eta = meter.update(len(idx))
                last = self.step_ == per_epoch
                # the two heads alternate, so the message (not a loss term) says which one this is
                for h, l_all, l_pui, l_prior in step_terms:
                    which = "over" if h < n_heads - 1 else "target"
                    for key, v in (("pui", l_pui.item()), ("prior", l_prior.item())):
                        sums[f"{which}_{key}"] = sums.get(f"{which}_{key}", 0.0) + v
                    sums[f"{which}_n"] = sums.get(f"{which}_n", 0) + 1
                _, l_all, l_pui, l_prior = step_terms[-1]
                losses = {"loss": float(loss.item()), "pui": l_pui.item(), self.prior: l_prior.item()}
                if instance:
                    losses["instance"] = l_inst.item()
                    sums["instance"] = sums.get("instance", 0.0) + losses["instance"]
                    sums["instance_n"] = sums.get("instance_n", 0) + 1
                which = "joint" if joint else ("over" if head < n_heads - 1 else "target")
                self.epoch_sums_ = sums
                metrics, message = {}, f"head {which}-clustering"
                if last:
                    self.epoch_, self.step_ = epoch + 1, 0
                    metrics = {**self._epoch_loss_means(sums), **self._epoch_metrics(data, eval_idx, images)}
                    message = collapse_message(metrics, k_target, f"{message}, epoch {epoch + 1}")
                    self.history_.append({"epoch": epoch, **losses, **metrics})
                yield Progress(epoch=epoch, step=s + 1, global_step=self.global_step_,
                               n_epochs=int(self.epochs), steps_per_epoch=per_epoch, losses=losses,
                               metrics=metrics, samples_per_s=rate, eta_s=eta, epoch_end=last,
                               message=message)
                if last:
                    break

    def _strong_kwargs(self) -> dict:
        """Strength of the strong scheme: ``crop_scale`` is the smallest crop area kept,
        ``intensity`` the brightness / contrast / gamma jitter."""
        a = float(self.intensity)
        return {"scale": (float(self.crop_scale), 1.0), "brightness": a, "contrast": a, "gamma": a}

    def _eval_index(self, n: int) -> np.ndarray:
        m = int(self.eval_samples)
        if m <= 0 or m >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng([int(self.seed), 7919]).choice(n, m, replace=False))

    def _images(self, x):
        from .augment2d import resize_images

        return resize_images(x, int(self.input_size or 0))

    @staticmethod
    def _global_batch_logits(lo, lp, r: int):
        """The logits the PUI matrix and the cluster-size prior are computed over: this process's
        rows, or the global batch's under torchrun (``distributed.gather_*``, identity on one
        process). The only place PICA's batch statistics see more than the local rows."""
        return dist.gather_rows(lo), dist.gather_repeated(lp, r)

    @staticmethod
    def _epoch_loss_means(sums: dict) -> dict:
        """Mean PUI and prior terms of each head over the epoch, and the instance term's when it
        is on (the learning curve)."""
        out = {}
        for which in ("over", "target"):
            k = sums.get(f"{which}_n", 0)
            if k:
                out[f"{which}_pui"] = sums[f"{which}_pui"] / k
                out[f"{which}_prior"] = sums[f"{which}_prior"] / k
        if sums.get("instance_n", 0):
            out["instance_loss"] = sums["instance"] / sums["instance_n"]
        return out

    def _recalibrate(self, images) -> None:
        """Precise BatchNorm statistics for the current weights from up to ``bn_samples``
        unaugmented training images, in training-sized batches (see ``precise_bn``)."""
        from ..device import autocast
        from ..models.backbones2d import precise_bn
        from .augment2d import to_unit_tensor

        m = int(self.bn_samples)
        if m <= 0:
            return
        n = len(images)
        idx = np.sort(np.random.default_rng([int(self.seed), 104729]).permutation(n)[:m])
        bs = max(2, min(int(self.batch_size), len(idx)))
        starts = range(0, len(idx) - bs + 1, bs)  # full batches only, as training
        with autocast(self.device_, self.mixed_precision):
            precise_bn(self.model_, (to_unit_tensor(images[idx[i:i + bs]], self.device_) for i in starts))

    def _epoch_metrics(self, data, eval_idx, images=None) -> dict:
        images = data.x if images is None else images
        self._recalibrate(images)
        assign = self._predict(images[eval_idx], resized=True)[1]
        return cluster_summary(data, assign, self.head_sizes_[-1], eval_idx)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self):
        if getattr(self, "model_", None) is None:
            raise RuntimeError("PICA is not fitted: train it or load a checkpoint first")

    @torch.no_grad()
    def _predict(self, x, batch_size: int = 512, resized: bool = False, head: int = -1):
        """(trunk features, argmax, probabilities of head ``head``: the target head unless told)
        for raw images (resized to ``input_size`` here unless ``resized``)."""
        from ..device import autocast
        from .augment2d import to_unit_tensor

        self._check_fitted()
        if not resized:
            x = self._images(x)
        model, dev = self.model_, self.device_
        was_training = model.training
        model.eval()
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            xb = to_unit_tensor(x[i:i + batch_size], dev)
            with autocast(dev, self.mixed_precision):
                f = model.trunk(xb)
                logits = model.heads[head](model.head_input(f))
            feats.append(f.float().cpu())
            probs.append(torch.softmax(logits.float(), 1).cpu())
        model.train(was_training)
        f = torch.cat(feats).numpy() if feats else np.zeros((0, model.trunk.out_dim), np.float32)
        p = torch.cat(probs).numpy() if probs else np.zeros((0, self.head_sizes_[head]), np.float32)
        return f, p.argmax(1), p

    def transform(self, data) -> np.ndarray:
        """Trunk features (N x 512), no augmentation."""
        return self._predict(getattr(data, "x", data))[0]

    def predict_clusters(self, data) -> np.ndarray:
        """Target-head cluster per sample (argmax)."""
        return self._predict(getattr(data, "x", data))[1]

    def predict_overclusters(self, data) -> np.ndarray:
        """Over-clustering head's cluster per sample (argmax over ``n_overclusters``): finer
        clusters for mapping clusters to labels (Algorithm 1) than the target head's."""
        return self._predict(getattr(data, "x", data), head=0)[1]

    def predict_proba(self, data) -> np.ndarray:
        """Target-head cluster probabilities (N x n_clusters)."""
        return self._predict(getattr(data, "x", data))[2]

    def predict_overcluster_proba(self, data) -> np.ndarray:
        """Over-clustering head's probabilities (N x n_overclusters): what merging its clusters
        into K weighs by (``core.cluster.merge.merge_soft_overclusters``), as its argmax is
        often a near tie."""
        return self._predict(getattr(data, "x", data), head=0)[2]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        self._check_fitted()
        return {"params": self.get_params(), "head_sizes": list(self.head_sizes_),
                "in_channels": self.in_channels_, "trunk_config": dict(self.trunk_config_),
                "model": self.model_.state_dict(),
                "optimizer": self.optimizer_.state_dict(), "epoch": self.epoch_, "step": self.step_,
                "global_step": self.global_step_, "history": list(self.history_),
                "epoch_sums": dict(self.epoch_sums_),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> "PICA":
        if "instance_weight" not in state.get("params", {}):
            self.instance_weight = 0.0  # trained before the instance term existed: no projector
        # checkpoints from before trunk_config: small stem at 28 px, no feature standardisation
        cfg = state.get("trunk_config") or {
            "backbone": state.get("params", {}).get("backbone", self.backbone),
            "small_input": bool(state.get("params", {}).get("small_input", self.small_input)),
            "input_size": 28, "sobel": False, "feature_norm": False}
        self._build(state["head_sizes"], in_channels=state.get("in_channels", 1), trunk_config=dict(cfg))
        # the network is what the checkpoint was built as (global pooling before pool_grid existed);
        # the reported hyperparameter follows it, not this class's default
        self.pool_grid = int(self.trunk_config_.get("pool_grid", 1))
        self.model_.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.epoch_, self.step_ = int(state["epoch"]), int(state["step"])
        self.global_step_ = int(state["global_step"])
        self.history_ = list(state.get("history", []))
        self.epoch_sums_ = dict(state.get("epoch_sums", {}))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        return self
