"""k-means on embeddings (l2-normalised first: the latent spaces here are compared by cosine)."""
from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def kmeans(features: np.ndarray, n_clusters: int, *, seed: int = 0, normalise: bool = True,
           n_init: int = 3, max_iter: int = 100) -> np.ndarray:
    """Cluster index per row. Uses MiniBatchKMeans past 50k rows so re-clustering stays interactive."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = l2_normalise(features) if normalise else np.asarray(features, dtype=np.float32)
    n_clusters = int(max(1, min(n_clusters, len(x))))
    if len(x) > 50_000:
        model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init,
                                batch_size=4096, max_iter=max_iter)
    else:
        model = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, max_iter=max_iter)
    return model.fit_predict(x).astype(int)
