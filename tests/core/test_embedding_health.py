"""``core.metrics.collapse.embedding_health``: a real embedding is healthy, collapsed ones are flagged."""
from __future__ import annotations

import numpy as np
import pytest

from core.metrics.collapse import embedding_health
from tests.conftest import DATA, need


@pytest.fixture(scope="module")
def breast_pixels():
    d = np.load(need(DATA / "breastmnist" / "breastmnist.npz"))
    return d["train_images"][:300].reshape(300, -1).astype(np.float32) / 255.0


def test_pca_of_real_images_is_healthy(breast_pixels):
    X = breast_pixels - breast_pixels.mean(0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    emb = X @ vt[:32].T
    h = embedding_health(emb)
    assert not h.collapsed, str(h)
    assert h.effective_rank > 3
    # raw (non-negative) pixels: all rows point roughly the same way, still not collapsed
    h_raw = embedding_health(breast_pixels)
    assert not h_raw.collapsed, str(h_raw)
    assert h_raw.mean_cosine > 0.5


def test_one_point_is_collapsed(breast_pixels):
    # every sample mapped to the same vector up to float32 round-off: DeepDiffusion at lr=1e6
    row = breast_pixels[0]
    emb = np.tile(row, (200, 1)) + np.float32(1e-6) * np.random.default_rng(0).normal(
        size=(200, row.size)).astype(np.float32)
    h = embedding_health(emb)
    assert h.collapsed and "same point" in h.reason
    assert h.mean_cosine > 0.9999


def test_one_line_is_collapsed(breast_pixels):
    t = np.linspace(-1, 1, 150)[:, None]
    emb = t * breast_pixels[0][None, :]
    h = embedding_health(emb)
    assert h.collapsed and "one line" in h.reason
    assert h.effective_rank == pytest.approx(1.0, abs=1e-6)


def test_non_finite_is_collapsed(breast_pixels):
    emb = breast_pixels.copy()
    emb[5, 3] = np.nan
    emb[9, 0] = np.inf
    h = embedding_health(emb)
    assert h.collapsed and not h.finite
    assert "2 of 300 rows" in h.reason


def test_too_few_rows_are_not_judged():
    h = embedding_health(np.ones((1, 4)))
    assert not h.collapsed and h.n == 1
