"""PCA fitted on the training features only; every sample (train, val, test) is projected."""
from __future__ import annotations

import numpy as np


def fit_pca(features: np.ndarray, n_components: int = 2, *, seed: int = 0):
    from sklearn.decomposition import PCA

    features = np.asarray(features, dtype=np.float32)
    n_components = min(n_components, features.shape[1], max(len(features), 1))
    return PCA(n_components=n_components, random_state=seed).fit(features)


def pca_project(features: np.ndarray, *, fit_mask=None, n_components: int = 2, seed: int = 0) -> np.ndarray:
    """Fit on ``features[fit_mask]`` (all rows when None or empty), transform all rows."""
    features = np.asarray(features, dtype=np.float32)
    fit_rows = features if fit_mask is None or not np.any(fit_mask) else features[np.asarray(fit_mask)]
    out = fit_pca(fit_rows, n_components, seed=seed).transform(features).astype(np.float32)
    if out.shape[1] < n_components:  # 1-D features: pad so the scatter always gets x and y
        out = np.pad(out, ((0, 0), (0, n_components - out.shape[1])))
    return out
