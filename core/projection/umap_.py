"""UMAP of any subset, with numba's compile cache on disk (25-80 s per fresh process otherwise)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..jobs.progress import Progress


def prepare_numba() -> None:
    """Call before numba loads (every engine and app module that uses numba does).

    * Compiled code is cached on disk (25-80 s of compiling per fresh process otherwise).
    * numba's OpenMP pool is as large as the thread budget: torch's thread count, or
      ``OMP_NUM_THREADS`` before torch is loaded. numba otherwise starts one worker per CPU at the
      first parallel call, and idle workers spin-wait. ``set_num_threads(1)`` keeps them out of the
      work but not out of the CPU: a one-thread DeepDiffusion epoch used 166 % CPU for the same wall
      time as 99 %, and two one-thread trainings side by side on a 2-core CPU ran at 5 samples/s
      each instead of ~70 (the LMR kernels, batch 16, k 80). A NUMBA_NUM_THREADS the user set is kept.
    """
    if "NUMBA_CACHE_DIR" not in os.environ:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentmap" / "numba"
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)
    if "numba" in sys.modules or "NUMBA_NUM_THREADS" in os.environ:
        return  # the pool size is read once, when numba loads
    if "torch" in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, sys.modules["torch"].get_num_threads()))
    elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"].strip()


class UMAPProjector:
    """Runs as a ``core.jobs.Job`` (``steps``) or directly (``fit_transform``).

    UMAP has no per-epoch hook, so progress is reported per stage: loading (numba compile),
    nearest-neighbour graph and layout; cancel takes effect between stages.
    """

    name = "umap"

    def __init__(self, *, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
                 seed: int = 0, n_epochs: int | None = None):
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.seed = seed
        self.n_epochs = n_epochs

    def get_params(self) -> dict:
        return dict(n_neighbors=self.n_neighbors, min_dist=self.min_dist, metric=self.metric,
                    seed=self.seed, n_epochs=self.n_epochs)

    def steps(self, features, *, resume=None):
        prepare_numba()
        features = np.asarray(features, dtype=np.float32)
        n = len(features)
        total = dict(n_epochs=1, steps_per_epoch=3)
        yield Progress(step=1, global_step=1, message="loading UMAP (numba compile on first use)", **total)
        import umap

        if n <= 3:
            self.embedding_ = np.zeros((n, 2), dtype=np.float32)
        else:
            reducer = umap.UMAP(n_neighbors=max(2, min(self.n_neighbors, n - 1)), min_dist=self.min_dist,
                                metric=self.metric, random_state=self.seed, n_epochs=self.n_epochs,
                                init="spectral" if n > 10 else "random")
            yield Progress(step=2, global_step=2, message=f"fitting UMAP on {n} samples", **total)
            self.embedding_ = reducer.fit_transform(features).astype(np.float32)
        yield Progress(step=3, global_step=3, message="done", **total)

    def fit_transform(self, features) -> np.ndarray:
        for _ in self.steps(features):
            pass
        return self.embedding_


def umap_project(features, **kw) -> np.ndarray:
    return UMAPProjector(**kw).fit_transform(features)
