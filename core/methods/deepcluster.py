"""DeepCluster (Caron et al. 2018) as adapted by DeepMCAT (Kart et al. 2021).

Pure pieces first (feature preprocessing, k-means with faiss-style empty-cluster splitting,
the uniform pseudo-label sampler, NMI between epochs), then the ``DeepCluster`` method.

The default trunk is the small ``convnet_small`` (a CPU budget of a few epochs);
``backbone="vgg16_bn"`` is DeepMCAT's. DeepMCAT's changes to DeepCluster kept here: VGG-16-BN
with adaptive average pooling (when chosen), raw
(not Sobel-filtered) images, 8 x over-clustering, SGD lr 0.05,
momentum 0.9, weight decay 1e-5, augmentation during training (DeepMCAT also augments the images
it clusters; here clustering sees them unaugmented, so epochs' assignments stay comparable
and ``nmi_prev`` measures the network's drift, not augmentation noise). k-means is our own Lloyd
iteration (faiss is not installed) with faiss's ``Clustering::train`` rules: random initial
centroids drawn from the data, a fixed number of iterations, and empty clusters refilled by
splitting a big one.

Two changes from DeepMCAT in the defaults (8,000 OrganAMNIST images, 12 epochs, two seeds;
``bench/results/deepcluster_pca_8k/``; k-means on raw pixels with the same 88 clusters: purity
0.643 / 0.669):

* Images are not z-scored one by one (``zscore=False``; DeepMCAT's ``True`` is selectable): CT
  intensities are calibrated and tell tissues apart (bone, air, soft tissue), and per-image
  z-scoring throws that away; an arbitrary MR scale is already removed where images become
  tensors (non-8-bit images are min-max scaled per image). Purity at 8 x K 0.698 / 0.676
  against 0.648 / 0.622 z-scored, NMI 0.449 / 0.430 against 0.398 / 0.385.
* The features are PCA-whitened to ``pca_dim=64`` dimensions before k-means, as DeepCluster
  itself does (to 256 from AlexNet's 4,096), instead of DeepMCAT's l2 normalisation alone
  (``pca_dim=0``, still selectable). Z-scored, whitening gives purity 0.648 / 0.622 against
  0.556 / 0.574 (128 dimensions: 0.621), and k-means with K = 11 on the features accuracy
  0.489 / 0.450 against 0.398 / 0.413.

A third, since 2026-12-01: the trunk's last map is pooled to a 3 x 3 grid of cells
(``pool_grid=3``; 1 is global average pooling, DeepMCAT's). Averaging the whole map keeps what is
in an image but not where, and OrganAMNIST's left and right organs are near mirror images told
apart by what lies beside them. On the same 8,000 images and 12 epochs, float32 on one CPU core
(``bench/results/pool_grid_8k/``), purity at 8 x K rose 0.654 -> 0.762 on seed 0 (0.764 on
seed 1); on the full set, trained transductively, 9 / 16 epochs reached test purity 0.833 /
0.845, where global pooling needed 29 / 51 for 0.838 / 0.847 (``bench/results/pool_grid_full/``):
faster, not a higher ceiling. About 5 % more time per epoch.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..jobs import Progress, RateMeter
from ..jobs import distributed as dist
from ..jobs.steps import run_to_end
from .base import Method

__all__ = ["preprocess_features", "fit_preprocessing", "apply_preprocessing", "kmeans_faiss_style",
           "split_empty_clusters", "images_lists", "uniform_label_indexes", "nmi_between", "DeepCluster"]


# --------------------------------------------------------------------------- pure pieces
def fit_preprocessing(features: np.ndarray, pca_dim: int = 0, eps: float = 1e-12):
    """Optional PCA-whitening to ``pca_dim`` components (eigenvalue power -0.5, as DeepCluster's
    ``faiss.PCAMatrix(d, pca_dim, eigen_power=-0.5)``), then row l2-normalisation.
    Returns ``(features, pca)`` where ``pca`` is ``(mean, projection)`` or None, to re-apply
    the same map to other samples with ``apply_preprocessing``."""
    x = np.asarray(features, dtype=np.float32)
    pca = None
    if pca_dim and pca_dim > 0 and len(x) > 1:
        mean = x.mean(0)
        xc = x - mean
        cov = (xc.T.astype(np.float64) @ xc) / max(len(x), 1)
        evals, evecs = np.linalg.eigh(cov)
        # whitening a (numerically) empty direction would blow its rounding noise up to unit
        # variance, and n points whitened in ~n dimensions form a regular simplex (all distances
        # equal, nothing left to cluster): at most n / 4 directions, and only ones with variance
        keep = min(int(pca_dim), len(x) // 4, int((evals > 1e-9 * max(float(evals.max()), 1e-30)).sum()))
        order = np.argsort(evals)[::-1][:max(keep, 1)]
        proj = (evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))).astype(np.float32)
        pca = (mean.astype(np.float32), proj)
        x = xc @ proj
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
    return x.astype(np.float32), pca


def preprocess_features(features: np.ndarray, pca_dim: int = 0) -> np.ndarray:
    """DeepCluster's ``clustering.py::preprocess_features``: PCA-whitening (when ``pca_dim`` > 0)
    and row l2-normalisation. DeepMCAT's setting is ``pca_dim=0`` (l2 only). Components are
    defined up to sign, so compare results through ``x @ x.T``."""
    return fit_preprocessing(features, pca_dim)[0]


def apply_preprocessing(features: np.ndarray, pca) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if pca is not None:
        x = (x - pca[0]) @ pca[1]
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def split_empty_clusters(centroids: np.ndarray, counts: np.ndarray, n: int, rng: np.random.RandomState,
                         eps: float = 1.0 / 1024) -> int:
    """faiss ``split_clusters``: each empty centroid copies a cluster chosen with probability
    (size - 1) / (n - k) (scanning clusters in turn), both perturbed by +-eps on alternating
    dimensions, and the donor's count is halved. In place; returns the number of splits."""
    k, d = centroids.shape
    n_split = 0
    signs = np.where(np.arange(d) % 2 == 0, 1.0, -1.0).astype(centroids.dtype)
    for ci in range(k):
        if counts[ci] != 0:
            continue
        if n <= k:
            break
        cj = 0
        while True:
            p = (counts[cj] - 1.0) / float(n - k)
            if rng.random_sample() < p:
                break
            cj = (cj + 1) % k
        centroids[ci] = centroids[cj] * (1 + signs * eps)
        centroids[cj] = centroids[cj] * (1 - signs * eps)
        counts[ci] = counts[cj] // 2
        counts[cj] -= counts[ci]
        n_split += 1
    return n_split


def _assign(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192):
    out_i, out_d = [], []
    c2 = (c * c).sum(1)
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        d = (xb * xb).sum(1, keepdim=True) - 2 * xb @ c.T + c2[None]
        dmin, imin = d.min(1)
        out_i.append(imin)
        out_d.append(dmin.clamp_min(0))
    return torch.cat(out_i), torch.cat(out_d)


def kmeans_faiss_style(x: np.ndarray, k: int, *, n_iter: int = 20, seed: int = 0, device=None):
    """Lloyd's k-means as faiss trains it: ``k`` distinct data points as initial centroids, then
    ``n_iter`` rounds of assignment and centroid update with empty clusters split from big ones.
    Returns ``(assignments, centroids, objective)``; the objective is the sum of squared
    distances of the last assignment step (faiss's ``obj``)."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    n, d = xt.shape
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k} for {n} points")
    rng = np.random.RandomState(int(seed) & 0x7FFFFFFF)
    c = xt[torch.as_tensor(rng.choice(n, k, replace=False), device=xt.device)].clone()
    assign = None
    for _ in range(int(n_iter)):
        assign, dist = _assign(xt, c)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, assign, xt)
        c = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
        if (counts == 0).any():
            cn, cc = c.cpu().numpy(), counts.cpu().numpy().copy()
            split_empty_clusters(cn, cc, n, rng)
            c = torch.as_tensor(cn, device=xt.device)
    assign, dist = _assign(xt, c)
    return assign.cpu().numpy().astype(np.int64), c.cpu().numpy(), float(dist.sum())


def images_lists(assignments, n_clusters: int) -> list[list[int]]:
    """Sample indices per cluster (DeepCluster's ``images_lists``), empty lists kept."""
    lists: list[list[int]] = [[] for _ in range(int(n_clusters))]
    for i, a in enumerate(np.asarray(assignments).astype(int)):
        lists[a].append(i)
    return lists


def uniform_label_indexes(n: int, lists, rng=None) -> np.ndarray:
    """DeepCluster's ``UnifLabelSampler.generate_indexes_epoch``: per non-empty cluster draw
    int(n / n_nonempty) + 1 members (with replacement only when the cluster is that small or
    smaller), concatenate, shuffle, truncate to ``n`` (or pad once by repetition).

    ``rng`` is a ``np.random.RandomState`` (or the ``np.random`` module itself); the draws
    follow the reference's legacy call sequence, so the same seed gives the same indexes."""
    rng = np.random if rng is None else rng
    nonempty = sum(1 for lst in lists if len(lst) != 0)
    if nonempty == 0:
        raise ValueError("no non-empty cluster to sample from")
    size = int(n / nonempty) + 1
    res = np.array([])
    for lst in lists:
        if len(lst) == 0:
            continue
        idx = rng.choice(lst, size, replace=(len(lst) <= size))
        res = np.concatenate((res, idx))
    rng.shuffle(res)
    out = list(res.astype("int"))
    if len(out) >= n:
        return np.asarray(out[:n], dtype=np.int64)
    out += out[: (n - len(out))]
    return np.asarray(out, dtype=np.int64)


def nmi_between(prev, cur, average_method: str = "arithmetic") -> float:
    """NMI between two epochs' assignments (DeepCluster's stability curve). ``arithmetic`` is
    DeepMCAT's eq. 2 and today's scikit-learn default; ``geometric`` was the default when
    DeepCluster was released."""
    from ..metrics.clustering import nmi

    return nmi(prev, cur, average_method=average_method)


# --------------------------------------------------------------------------- the method
class DeepCluster(Method):
    """Alternate k-means on the network's features and classification of the pseudo-labels.

    Each epoch is ``1 + n_batches`` steps. Step 1 extracts features of every sample (no
    augmentation, eval mode), preprocesses them (l2, optional PCA-whitening), runs k-means with
    ``n_clusters`` centroids (0: ``overcluster_factor`` x the number of classes, 8 x as DeepMCAT;
    80 without labels), logs the NMI with the previous epoch's assignments (``nmi_prev``) and,
    when labels exist, NMI against them and cluster purity (DeepMCAT eq. 3), re-initialises the
    top layer and draws the epoch's samples uniformly over the pseudo-labels. The following
    steps train the network with cross-entropy on strongly augmented batches of those samples
    (SGD, lr 0.05, momentum 0.9, weight decay 1e-5 on trunk and classifier; a fresh plain SGD
    for the new top layer, as DeepCluster).

    After the last epoch the features are clustered once more, so the final logged scores,
    ``predict_clusters`` (nearest centroid of that k-means: the over-clustering, which
    Algorithm 1 can name) and ``transform`` (the clustered features) describe the final network.
    """

    name = "deepcluster"
    input_kind = "image2d"
    param_choices = {"backbone": ("convnet_small", "convnet", "vgg16_bn", "resnet18"),
                     "mixed_precision": ("auto", "bf16", "off")}
    param_help = {
        "input_size": "resize images to this many pixels square on load (0: keep the stored size)",
        "small_input": "ResNet stem chosen for the input size (3x3 up to 40 px, 3x3 stride 2 up to 96, "
                       "then ImageNet's); off: ImageNet stem",
        "mixed_precision": "auto: bf16 on CUDA, float32 on CPU; bf16: bf16 on both; off: float32",
        "bn_samples": "images whose statistics set BatchNorm before each clustering (0: running averages)",
        "pool_grid": "pool the trunk's last map to this many cells per side (1: global average; "
                     "3 keeps where things are, e.g. left from right)",
        "backbone": "trunk network (DeepMCAT: vgg16_bn; default: the small convnet_small for a CPU budget)",
        "n_clusters": "k-means clusters (0: overcluster_factor x number of classes, else 80)",
        "overcluster_factor": "clusters per class when n_clusters is 0",
        "epochs": "clustering + training rounds",
        "batch_size": "images per step",
        "lr": "SGD learning rate",
        "momentum": "SGD momentum",
        "weight_decay": "SGD weight decay",
        "hidden_dim": "width of the classifier between trunk and top layer",
        "mlp_depth": "linear layers in the classifier (0: cluster the trunk's features)",
        "dropout": "dropout in the classifier",
        "pca_dim": "PCA-whitening dimensions before k-means (0: l2 only, DeepMCAT; DeepCluster: 256)",
        "kmeans_iter": "k-means iterations",
        "augment": "strong augmentation of training batches",
        "zscore": "z-score each image on its own before the network (DeepMCAT; off: CT intensities kept)",
        "seed": "random seed",
        "device": "auto, cpu or cuda",
    }

    def __init__(self, *, backbone: str = "convnet_small", input_size: int = 0, small_input: bool = True,
                 pool_grid: int = 3, n_clusters: int = 0,
                 overcluster_factor: int = 8,
                 epochs: int = 200, batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-5, hidden_dim: int = 512, mlp_depth: int = 2, dropout: float = 0.5,
                 pca_dim: int = 64, kmeans_iter: int = 20, augment: bool = True, zscore: bool = False,
                 bn_samples: int = 2048, mixed_precision: str = "auto", seed: int = 0, device: str = "auto"):
        self.backbone = backbone
        self.bn_samples = bn_samples
        self.input_size = input_size
        self.mixed_precision = mixed_precision
        self.small_input = small_input
        self.pool_grid = pool_grid
        self.n_clusters = n_clusters
        self.overcluster_factor = overcluster_factor
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.hidden_dim = hidden_dim
        self.mlp_depth = mlp_depth
        self.dropout = dropout
        self.pca_dim = pca_dim
        self.kmeans_iter = kmeans_iter
        self.augment = augment
        self.zscore = zscore
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ building
    def _k(self, data) -> int:
        from .pica import n_reference_classes

        if int(self.n_clusters) > 0:
            k = int(self.n_clusters)
        else:
            c = n_reference_classes(data)
            k = int(self.overcluster_factor) * c if c else 80
        return max(1, min(k, len(data)))

    def _build(self, k: int, in_channels: int = 1, image_size: int = 28, trunk_config: dict | None = None) -> None:
        from ..device import pick_device
        from ..models.backbones2d import build_backbone
        from ..models.heads import FeatureClassifierNet

        self.device_ = pick_device(self.device)
        torch.manual_seed(int(self.seed))
        self.k_ = int(k)
        self.in_channels_ = int(in_channels)
        cfg = trunk_config or {"backbone": self.backbone, "small_input": bool(self.small_input),
                               "input_size": int(image_size), "resize": int(self.input_size or 0), "sobel": False,
                               "pool_grid": int(self.pool_grid)}
        trunk = build_backbone(cfg["backbone"], in_channels, small_input=cfg["small_input"],
                               input_size=cfg["input_size"], stem=cfg.get("stem"), pool_grid=cfg.get("pool_grid", 1))
        cfg["stem"] = getattr(trunk, "stem_name", None)
        self.trunk_config_ = cfg
        self.model_ = FeatureClassifierNet(trunk, int(self.hidden_dim),
                                           depth=int(self.mlp_depth), dropout=float(self.dropout),
                                           n_classes=self.k_).to(self.device_)
        body = [p for n, p in self.model_.named_parameters() if not n.startswith("top_layer.")]
        self.optimizer_ = torch.optim.SGD(body, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        self._new_top_optimizer()
        self.epoch_, self.step_, self.global_step_ = 0, 0, 0
        self.assign_ = None        # this epoch's pseudo-labels
        self.prev_assign_ = None   # the previous epoch's
        self.indexes_ = None       # this epoch's uniformly drawn sample order
        self.centroids_ = None
        self.pca_ = None
        self.history_: list[dict] = []
        self.epoch_metrics_: dict = {}

    def _new_top_optimizer(self):
        self.top_optimizer_ = torch.optim.SGD(self.model_.top_layer.parameters(), lr=self.lr,
                                              weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ features
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image z-scoring (DeepMCAT) of [0, 1] images, after augmentation."""
        if not self.zscore:
            return x
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / std.clamp_min(1e-6)

    def _images(self, x):
        from .augment2d import resize_images

        return resize_images(x, int(self.input_size or 0))

    def _recalibrate(self, images) -> None:
        """Precise BatchNorm statistics for the current weights from up to ``bn_samples``
        unaugmented images (``backbones2d.precise_bn``): training sees strongly augmented batches,
        k-means clean images, and the running averages lag the weights."""
        from ..device import autocast
        from ..models.backbones2d import precise_bn
        from .augment2d import to_unit_tensor

        m = int(self.bn_samples)
        if m <= 0:
            return
        idx = np.sort(np.random.default_rng([int(self.seed), 104729]).permutation(len(images))[:m])
        bs = max(2, min(int(self.batch_size), len(idx)))
        with autocast(self.device_, self.mixed_precision):
            precise_bn(self.model_, (self._normalise(to_unit_tensor(images[idx[i:i + bs]], self.device_))
                                     for i in range(0, len(idx) - bs + 1, bs)))

    def _features(self, x, batch_size: int = 512, resized: bool = True) -> np.ndarray:
        return run_to_end(self._feature_steps(x, batch_size, resized))

    def _feature_steps(self, x, batch_size: int = 512, resized: bool = True):
        """Features of ``x`` in eval mode, as a generator yielding ``(done, total)`` after each
        batch (progress during the clustering step) and returning the (N x d) array."""
        from ..device import autocast
        from .augment2d import to_unit_tensor

        if not resized:
            x = self._images(x)
        model, dev = self.model_, self.device_
        was_training = model.training
        model.eval()
        out = []
        try:
            for i in range(0, len(x), batch_size):
                xb = self._normalise(to_unit_tensor(x[i:i + batch_size], dev))
                with torch.no_grad(), autocast(dev, self.mixed_precision):
                    out.append(model.features(xb).float().cpu())
                yield min(len(x), i + batch_size), len(x)
        finally:
            model.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, model.feature_dim), np.float32)

    def _cluster(self, data, final: bool = False, images=None):
        return run_to_end(self._cluster_steps(data, final, images))

    def _cluster_steps(self, data, final: bool = False, images=None):
        """Step 1 of an epoch: k-means pseudo-labels, metrics, new top layer, uniform sample order.
        ``final``: the clustering after the last epoch (assignments, centroids and metrics only).
        A generator: yields ``(done, total)`` while extracting features, returns (losses, metrics)."""
        from ..metrics.clustering import nmi, purity, reference_labels

        images_ = self._images(data.x) if images is None else images
        self._recalibrate(images_)
        # torchrun: each rank extracts its block of the features, k-means runs on rank 0 over all
        # of them and every rank receives its result (core.jobs.distributed)
        feats = dist.gather_array((yield from self._feature_steps(images_[dist.local_share(len(images_))])))
        x, pca = fit_preprocessing(feats, int(self.pca_dim))
        kseed = int(np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, self.epoch_ + int(final), 1])
                    .generate_state(1)[0])
        assign, centroids, obj = dist.on_main(kmeans_faiss_style, x, self.k_, n_iter=int(self.kmeans_iter), seed=kseed,
                                                    device=self.device_)
        self.prev_assign_, self.assign_ = self.assign_, assign
        self.centroids_, self.pca_ = centroids, pca
        metrics = {"n_used_clusters": float(len(np.unique(assign)))}
        if self.prev_assign_ is not None:
            metrics["nmi_prev"] = nmi(self.prev_assign_, assign)
        if data.y is not None:
            ref = reference_labels(data.y)
            ok = ref >= 0
            if ok.sum() >= 2:
                metrics["nmi"] = nmi(ref[ok], assign[ok])
                metrics["purity"] = purity(ref[ok], assign[ok])
        self.epoch_metrics_ = metrics
        if final:
            return {"kmeans": obj / max(len(x), 1)}, metrics
        rs = np.random.RandomState(int(np.random.SeedSequence(
            [int(self.seed) & 0xFFFFFFFF, self.epoch_, 2]).generate_state(1)[0]) & 0x7FFFFFFF)
        self.indexes_ = uniform_label_indexes(len(data), images_lists(assign, self.k_), rs)
        g = torch.Generator().manual_seed(int(self.seed) * 100003 + self.epoch_)
        self.model_.reset_top_layer(self.k_, generator=g)
        self._new_top_optimizer()
        return {"kmeans": obj / max(len(x), 1)}, metrics

    # ------------------------------------------------------------------ training
    def steps(self, data, *, resume: dict | None = None):
        from ..device import autocast
        from .augment2d import strong_augment, to_unit_tensor
        from .pica import _step_generator

        n = len(data)
        if n < 2:
            raise ValueError(f"DeepCluster needs at least 2 images, got {n}")
        from .pica import load_images

        # resized once, on load, reporting progress from the start
        images = yield from load_images(data.x, int(self.input_size or 0), n_epochs=int(self.epochs),
                                        what="DeepCluster")
        if resume is not None:
            self.load_state_dict(resume)
        else:
            x0 = to_unit_tensor(images[:1])
            self._build(self._k(data), in_channels=x0.shape[1], image_size=max(x0.shape[-2:]))
        dist.prepare_all(self.model_)  # torchrun: global-batch BatchNorm, rank 0's weights
        bs = min(int(self.batch_size), n)
        n_batches = max(1, n // bs)
        per_epoch = 1 + n_batches
        meter = RateMeter(max(0, (int(self.epochs) - self.epoch_) * per_epoch - self.step_))
        while self.epoch_ < int(self.epochs):
            epoch = self.epoch_
            while self.step_ < per_epoch:
                s = self.step_
                if s == 0:
                    losses, metrics = yield from self._clustering_progress(data, images, epoch, per_epoch)
                    n_seen = n
                    msg = f"k-means, {self.k_} clusters"
                else:
                    model = self.model_
                    model.train()
                    idx = self.indexes_[(s - 1) * bs:s * bs]
                    x = to_unit_tensor(images[idx], self.device_)
                    if self.augment:
                        x = strong_augment(x, generator=_step_generator(self.seed, epoch, s))
                    x = self._normalise(x)
                    target = torch.as_tensor(self.assign_[idx], device=self.device_)
                    with autocast(self.device_, self.mixed_precision):  # torchrun: this rank's rows
                        logits = dist.global_batch(model(dist.local_batch(x)))
                    loss = F.cross_entropy(logits.float(), target)
                    self.optimizer_.zero_grad(set_to_none=True)
                    self.top_optimizer_.zero_grad(set_to_none=True)
                    loss.backward()
                    dist.sync_gradients(model)
                    self.optimizer_.step()
                    self.top_optimizer_.step()
                    losses, metrics, n_seen, msg = {"ce": loss.item()}, {}, len(idx), "training"
                self.step_ += 1
                self.global_step_ += 1
                rate, eta = meter.update(n_seen)
                last = self.step_ == per_epoch
                if last:
                    if epoch + 1 == int(self.epochs):
                        # the run's final clustering is of the final network, so that
                        # predict_clusters and the logged scores describe what transform gives
                        yield from self._clustering_progress(data, images, epoch, per_epoch, final=True)
                    metrics = dict(self.epoch_metrics_)
                    self.history_.append({"epoch": epoch, **losses, **metrics})
                    self.epoch_, self.step_ = epoch + 1, 0
                yield Progress(epoch=epoch, step=s + 1, global_step=self.global_step_, n_epochs=int(self.epochs),
                               steps_per_epoch=per_epoch, losses=losses, metrics=metrics, samples_per_s=rate,
                               eta_s=eta, epoch_end=last, message=msg)
                if last:
                    break

    def _clustering_progress(self, data, images, epoch: int, per_epoch: int, final: bool = False):
        """``_cluster_steps`` with a start-up ``Progress`` (no losses) every few feature batches,
        so the clustering step of a large set is not a silent minute."""
        gen = self._cluster_steps(data, final=final, images=images)
        meter, last_done = RateMeter(), 0
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                return stop.value
            rate, _ = meter.update(done - last_done)
            last_done = done
            if done == total or (done // 512) % 8 == 0:
                yield Progress(epoch=epoch, step=self.step_, global_step=self.global_step_,
                               n_epochs=int(self.epochs), steps_per_epoch=per_epoch, samples_per_s=rate,
                               eta_s=(total - done) / max(rate or 0.0, 1e-9),
                               message=f"features for k-means{' (final)' if final else ''}: {done}/{total}")

    # ------------------------------------------------------------------ inference
    def _check_fitted(self):
        if getattr(self, "model_", None) is None:
            raise RuntimeError("DeepCluster is not fitted: train it or load a checkpoint first")

    def transform(self, data) -> np.ndarray:
        """The features k-means clusters (classifier output before its last ReLU), no augmentation."""
        self._check_fitted()
        return self._features(getattr(data, "x", data), resized=False)

    def predict_clusters(self, data) -> np.ndarray:
        """Nearest centroid of the last k-means for each sample (the over-clustering)."""
        self._check_fitted()
        if self.centroids_ is None:
            raise RuntimeError("DeepCluster has not clustered yet: train at least one step")
        x = apply_preprocessing(self.transform(data), self.pca_)
        return _assign(torch.as_tensor(x), torch.as_tensor(self.centroids_))[0].numpy().astype(np.int64)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        self._check_fitted()
        return {"params": self.get_params(), "k": self.k_, "in_channels": self.in_channels_,
                "trunk_config": dict(self.trunk_config_),
                "model": self.model_.state_dict(), "optimizer": self.optimizer_.state_dict(),
                "top_optimizer": self.top_optimizer_.state_dict(), "epoch": self.epoch_, "step": self.step_,
                "global_step": self.global_step_, "assign": self.assign_, "prev_assign": self.prev_assign_,
                "indexes": self.indexes_, "centroids": self.centroids_, "pca": self.pca_,
                "history": list(self.history_), "epoch_metrics": dict(self.epoch_metrics_),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> "DeepCluster":
        cfg = state.get("trunk_config") or {
            "backbone": state.get("params", {}).get("backbone", self.backbone),
            "small_input": bool(state.get("params", {}).get("small_input", self.small_input)),
            "input_size": 28, "sobel": False}
        self._build(int(state["k"]), in_channels=int(state.get("in_channels", 1)), trunk_config=dict(cfg))
        # the network is what the checkpoint was built as (global pooling before pool_grid existed);
        # the reported hyperparameter follows it, not this class's default
        self.pool_grid = int(self.trunk_config_.get("pool_grid", 1))
        self.model_.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.top_optimizer_.load_state_dict(state["top_optimizer"])
        self.epoch_, self.step_ = int(state["epoch"]), int(state["step"])
        self.global_step_ = int(state["global_step"])
        self.assign_, self.prev_assign_ = state.get("assign"), state.get("prev_assign")
        self.indexes_, self.centroids_, self.pca_ = state.get("indexes"), state.get("centroids"), state.get("pca")
        self.history_ = list(state.get("history", []))
        self.epoch_metrics_ = dict(state.get("epoch_metrics", {}))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        return self
