"""The first map of a new project, before any training: a baseline embedding computed right
after import, so the scatter, the neighbours and the clusters work at once, and trained runs
have something to be compared with.

* images and volumes: PCA of the pixels / voxels (volumes block-averaged to at most 32 per
  side first; ``PixelPCA``);
* point clouds (masks and meshes): the untrained, seeded PointNet encoder of DeepDiffusion
  (``UntrainedPointNet``), which on the shape sets retrieves as well as the trained runs do
  (README: DeepDiffusion at the baselines' level).

``baseline_steps(project)`` is a step generator (``core.jobs`` protocol: one ``Progress`` per
step, stops within a step on cancel); it records a finished run named ``baseline-pca`` or
``baseline-pointnet`` and applies it like a trained run (embedding, PCA, clustering, active
when the project has no active run yet). Both baselines follow scikit-learn conventions.
"""
from __future__ import annotations

import numpy as np

from ..jobs import Progress

#: volumes are block-averaged to at most this many voxels per side before the PCA
MAX_SIDE = 32
#: the PCA is fitted on at most this many samples (seeded draw), then applied to all
MAX_FIT = 20_000
BASELINE_METHODS = ("baseline-pca", "baseline-pointnet")


def _downsample(x: np.ndarray, max_side: int) -> np.ndarray:
    """N x (spatial...) -> block means so that no side exceeds ``max_side`` (integer factors)."""
    x = np.asarray(x)
    spatial = x.shape[1:]
    f = [max(1, int(np.ceil(s / max_side))) for s in spatial]
    if all(k == 1 for k in f):
        return x.astype(np.float32, copy=False)
    crop = tuple(slice(0, (s // k) * k) for s, k in zip(spatial, f))
    x = x[(slice(None),) + crop].astype(np.float32, copy=False)
    shape = [x.shape[0]]
    for s, k in zip(x.shape[1:], f):
        shape += [s // k, k]
    x = x.reshape(shape)
    return x.mean(axis=tuple(range(2, len(shape), 2)))


class PixelPCA:
    """PCA of flattened pixels/voxels (volumes block-averaged to ``max_side``), each sample
    standardised to zero mean and unit variance first (intensity scale differs across scans)."""

    name = "baseline-pca"

    def __init__(self, *, n_components: int = 32, max_side: int = MAX_SIDE, max_fit: int = MAX_FIT,
                 seed: int = 0, input_kind: str = "image2d"):
        self.n_components = n_components
        self.max_side = max_side
        self.max_fit = max_fit
        self.seed = seed
        self.input_kind = input_kind

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("n_components", "max_side", "max_fit", "seed", "input_kind")}

    def _rows(self, x) -> np.ndarray:
        x = np.asarray(getattr(x, "x", x))
        if x.ndim == 4 and x.shape[-1] in (3, 4) and self.input_kind == "image2d":
            x = x[..., :3].mean(-1)  # RGB frames: luminance
        x = _downsample(x, int(self.max_side)).reshape(len(x), -1).astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        x /= np.maximum(x.std(axis=1, keepdims=True), 1e-6)
        return x

    def fit(self, data) -> "PixelPCA":
        from sklearn.decomposition import PCA

        x = self._rows(data)
        if len(x) < 2:
            raise ValueError(f"PixelPCA: need at least 2 samples, got {len(x)}")
        if len(x) > int(self.max_fit):
            x = x[np.random.default_rng(int(self.seed)).choice(len(x), int(self.max_fit), replace=False)]
        k = int(min(self.n_components, len(x) - 1, x.shape[1]))
        pca = PCA(n_components=k, svd_solver="randomized" if k < min(x.shape) // 2 else "full",
                  random_state=int(self.seed)).fit(x)
        # the fitted projection only (what sklearn's PCA.transform applies, no whitening): it is
        # what the run's checkpoint keeps, so a new case is placed with exactly this map
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        return self

    def transform(self, data) -> np.ndarray:
        if getattr(self, "components_", None) is None:
            raise RuntimeError("PixelPCA.transform: fit first")
        x = self._rows(data)
        if x.shape[1] != self.components_.shape[1]:
            raise ValueError(f"PixelPCA: these samples give {x.shape[1]} values per sample after "
                             f"downsampling, the fitted map expects {self.components_.shape[1]} "
                             "(a different image or volume size than the project's first map)")
        out = np.concatenate([(x[i:i + 4096] - self.mean_) @ self.components_.T
                              for i in range(0, len(x), 4096)])
        return out.astype(np.float32)

    def state_dict(self) -> dict:
        import torch

        return {"params": self.get_params(), "mean": torch.from_numpy(self.mean_),
                "components": torch.from_numpy(self.components_)}

    def load_state_dict(self, state: dict) -> "PixelPCA":
        self.mean_ = state["mean"].numpy().astype(np.float32)
        self.components_ = state["components"].numpy().astype(np.float32)
        return self

    @classmethod
    def from_checkpoint(cls, path_or_state) -> "PixelPCA":
        return _from_checkpoint(cls, path_or_state)


class UntrainedPointNet:
    """DeepDiffusion's PointNet encoder at its seeded initialisation (no training); ``fit`` only
    sets the BatchNorm statistics from one pass over the shapes; l2-normalised features of
    1024-point clouds in eval mode."""

    name = "baseline-pointnet"
    input_kind = "points"

    def __init__(self, *, out_dim: int = 254, seed: int = 0, device: str = "cpu"):
        self.out_dim = out_dim
        self.seed = seed
        self.device = device

    def get_params(self) -> dict:
        return {"out_dim": self.out_dim, "seed": self.seed, "device": self.device}

    def fit(self, data=None) -> "UntrainedPointNet":
        from ..methods.deepdiffusion import DeepDiffusion

        self.model_ = DeepDiffusion(out_dim=int(self.out_dim), seed=int(self.seed), device=self.device,
                                    mixed_precision="off")
        self.model_._build()
        if data is not None:
            # BatchNorm statistics of one pass over the shapes (no gradient, no training): with
            # its initial statistics the encoder maps every shape to nearly the same direction
            pts = np.ascontiguousarray(np.asarray(getattr(data, "x", data), dtype=np.float32))
            gen = self.model_._batch_features(pts)
            for _ in gen:
                pass
        return self

    def transform(self, data) -> np.ndarray:
        if getattr(self, "model_", None) is None:
            self.fit()
        return self.model_.transform(data)

    def state_dict(self) -> dict:
        # the encoder only: its seeded weights and the BatchNorm statistics ``fit`` set
        return {"params": self.get_params(), "encoder": self.model_.encoder_.state_dict()}

    def load_state_dict(self, state: dict) -> "UntrainedPointNet":
        self.fit()
        self.model_.encoder_.load_state_dict(state["encoder"])
        self.model_.encoder_.eval()
        return self

    @classmethod
    def from_checkpoint(cls, path_or_state) -> "UntrainedPointNet":
        return _from_checkpoint(cls, path_or_state)


def _from_checkpoint(cls, path_or_state):
    """A baseline rebuilt from its run's checkpoint (``load_checkpoint``: tensors only)."""
    from ..jobs.checkpoint import load_checkpoint

    state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state)
    return cls(**dict(state.get("params", {}))).load_state_dict(state)


BASELINES = {PixelPCA.name: PixelPCA, UntrainedPointNet.name: UntrainedPointNet}


def refit_first_map(project, run: dict):
    """A first map recorded before first maps kept a checkpoint: fit again on the samples of
    its stored embedding (seeded: the same samples give the same map), keep the checkpoint."""
    from .runs import load_method_data

    method = BASELINES[run["method"]](**dict(run.get("params") or {}))
    ids, _ = project.embedding(int(run["id"]))
    method.fit(load_method_data(project, method, ids=[str(s) for s in ids]))
    _keep_checkpoint(project, int(run["id"]), method)
    return method


def _keep_checkpoint(project, run_id: int, method) -> None:
    """The first map's state as its run's checkpoint (tensors only), like a trained run's."""
    from ..jobs.checkpoint import relative_to_project, save_checkpoint

    checkpoint = project.run_dir(run_id) / "checkpoint.pt"
    save_checkpoint(checkpoint, method.state_dict())
    project.update_run(run_id, checkpoint=relative_to_project(project.path, checkpoint))


def choose_baseline(project):
    """The baseline for what the project holds: the untrained PointNet when shapes have (or can
    get) point clouds, else PCA of volumes, else PCA of 2D images; None when nothing fits."""
    kinds = {k for (k,) in project.query("SELECT DISTINCT kind FROM samples")}  # not every row
    if kinds & {"mask", "mesh", "structure"}:  # structures: one organ of a label map each
        return UntrainedPointNet()
    if "volume" in kinds:
        return PixelPCA(input_kind="volume")
    if "image2d" in kinds:
        return PixelPCA(input_kind="image2d")
    return None


def has_baseline(project) -> bool:
    runs = project.runs()
    return bool(len(runs)) and bool(runs["method"].isin(BASELINE_METHODS).any())


def baseline_steps(project, *, method=None):
    """Step generator: load the data, fit and apply the baseline, record it as a finished run.

    The result becomes the active run only when the project has none (a trained run the user
    chose is never replaced). Yields ``Progress`` with a message per stage; the last one's
    message names the run.
    """
    from .apply import apply_run
    from .runs import load_method_data

    method = method if method is not None else choose_baseline(project)
    if method is None:
        yield Progress(message="no images, volumes or shapes to make a first map of")
        return
    total = 4
    yield Progress(step=0, global_step=0, total_steps=total, message=f"{method.name}: loading data")
    data = load_method_data(project, method)
    if len(data) < 2:
        yield Progress(step=total, global_step=total, total_steps=total,
                       message=f"{method.name}: {len(data)} samples, nothing to map yet")
        return
    yield Progress(step=1, global_step=1, total_steps=total,
                   message=f"{method.name}: fitting on {len(data)} samples")
    method.fit(data)
    previous_active = project.meta("active_run")
    previous_clustering = project.meta("active_clustering")
    run_id = project.create_run(method.name, method.get_params(), device=getattr(method, "device", "cpu"))
    _keep_checkpoint(project, run_id, method)  # so new cases are placed on the first map too
    yield Progress(step=2, global_step=2, total_steps=total, message=f"{method.name}: embedding, PCA, clusters")
    try:
        lines = apply_run(project, method, run_id, data=data)
    except BaseException:
        project.update_run(run_id, status="failed", finished=True, message="baseline could not be applied")
        raise
    project.update_run(run_id, status="finished", finished=True,
                       message=f"baseline first map of {len(data)} samples")
    if previous_active:
        # a trained run was active: keep it, the baseline is there to compare with
        project.set_meta("active_run", previous_active)
        project.set_meta("active_clustering", previous_clustering or "")
    yield Progress(step=total, global_step=total, total_steps=total,
                   message=f"first map: run {run_id} ({method.name}); " + "; ".join(lines[:2]))
    return run_id


class BaselineTask:
    """``baseline_steps`` in the ``steps()`` protocol of ``core.jobs.Job`` (for the app's job
    runner and the CLI)."""

    name = "first map"

    def __init__(self, project, method=None):
        self.project = project
        self.method = method if method is not None else choose_baseline(project)
        self.method_name = getattr(self.method, "name", "")
        self.run_id = None

    def steps(self, data=None, *, resume=None):
        self.run_id = yield from baseline_steps(self.project, method=self.method)
