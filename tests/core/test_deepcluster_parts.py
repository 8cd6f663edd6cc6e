"""DeepCluster's pieces: uniform pseudo-label sampler (bitwise), k-means with empty-cluster
splitting, feature preprocessing."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_reference
from core.methods.deepcluster import (DeepCluster, apply_preprocessing, fit_preprocessing, images_lists,
                                      kmeans_faiss_style, nmi_between, preprocess_features,
                                      split_empty_clusters, uniform_label_indexes)
from core.metrics.clustering import nmi


def test_uniform_sampler_reproduces_reference_bitwise():
    d = load_reference("deepcluster_unif_sampler.npz")
    lists = images_lists(d["cluster_of_index"], int(d["n_clusters"]))
    assert any(len(lst) == 0 for lst in lists)  # the case has an empty cluster
    got = uniform_label_indexes(int(d["N"]), lists, np.random.RandomState(int(d["np_seed"])))
    np.testing.assert_array_equal(got, d["indexes"])
    # the global legacy generator, as the reference calls it, gives the same
    np.random.seed(int(d["np_seed"]))
    np.testing.assert_array_equal(uniform_label_indexes(int(d["N"]), lists), d["indexes"])


def test_uniform_sampler_balances_pseudo_labels():
    assign = np.r_[np.zeros(90, int), np.ones(10, int)]
    idx = uniform_label_indexes(100, images_lists(assign, 3), np.random.RandomState(0))
    counts = np.bincount(assign[idx], minlength=3)
    assert len(idx) == 100 and counts[2] == 0 and abs(counts[0] - counts[1]) <= 2


def test_nmi_between_epochs_matches_reference():
    d = load_reference("deepcluster_nmi.npz")
    assert nmi_between(d["assign_prev"], d["assign_cur"]) == pytest.approx(float(d["nmi_arithmetic"]))
    assert nmi_between(d["assign_prev"], d["assign_cur"], "geometric") == pytest.approx(float(d["nmi_geometric"]))


def _blobs(n_per=60, k=6, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d))
    x = np.concatenate([rng.normal(c, 0.3, (n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def test_kmeans_finds_blobs_after_l2_normalisation():
    x, truth = _blobs()
    feats = preprocess_features(x)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    best = max(nmi(truth, kmeans_faiss_style(feats, 6, seed=s)[0]) for s in range(3))
    assert best > 0.9


def test_kmeans_overclustering_leaves_no_cluster_empty():
    x, _ = _blobs(n_per=20, k=3)
    assign, centroids, obj = kmeans_faiss_style(preprocess_features(x), 24, seed=1)
    assert centroids.shape == (24, 32) and obj > 0
    assert (np.bincount(assign, minlength=24) > 0).sum() >= 20


def test_split_empty_clusters_copies_a_big_cluster_with_perturbation():
    centroids = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    counts = np.array([9, 0, 1])
    n = split_empty_clusters(centroids, counts, 10, np.random.RandomState(0))
    assert n == 1
    # cluster 2 has size 1 so p = 0: only cluster 0 can donate
    eps = 1 / 1024
    np.testing.assert_allclose(centroids[1], [1 * (1 + eps), 2 * (1 - eps), 3 * (1 + eps), 4 * (1 - eps)])
    np.testing.assert_allclose(centroids[0], [1 * (1 - eps), 2 * (1 + eps), 3 * (1 - eps), 4 * (1 + eps)])
    assert counts.tolist() == [5, 4, 1]


def test_pca_whitening_decorrelates_before_normalising():
    x, _ = _blobs()
    feats, (mean, proj) = fit_preprocessing(x, pca_dim=8)
    assert feats.shape == (len(x), 8)
    white = (x - mean) @ proj
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(8), atol=1e-3)
    np.testing.assert_allclose(preprocess_features(x, 8), feats, rtol=1e-6)
    # new rows through the fitted projection: as close to the float64 oracle as the fit's own rows
    # (unit-norm rows: float32 rounding is ~1e-7 absolute, whatever BLAS kernel the CPU picks)
    oracle = (x[:5].astype(np.float64) - mean.astype(np.float64)) @ proj.astype(np.float64)
    oracle /= np.linalg.norm(oracle, axis=1, keepdims=True)
    np.testing.assert_allclose(apply_preprocessing(x[:5], (mean, proj)), oracle, rtol=0, atol=1e-5)
    np.testing.assert_allclose(feats[:5], oracle, rtol=0, atol=1e-5)
    assert fit_preprocessing(x)[1] is None


def test_whitening_keeps_only_directions_a_small_set_supports():
    # 16 points in 32 dimensions: whitened to ~16 dimensions they would form a regular simplex
    # (all pairwise distances equal); at most n / 4 directions are kept, never an empty one
    x, _ = _blobs()
    small = x[:16]
    feats, (_, proj) = fit_preprocessing(small, pca_dim=64)
    assert proj.shape[1] == 4 and feats.shape == (16, 4)
    d = np.linalg.norm(feats[:, None] - feats[None], axis=-1)[np.triu_indices(16, 1)]
    assert d.std() / d.mean() > 0.1  # distances still differ
    rank2 = np.repeat(x[:2], 50, axis=0)  # 100 rows, only one direction with variance
    assert fit_preprocessing(rank2, pca_dim=64)[1][1].shape[1] == 1
    assert DeepCluster().pca_dim == 64  # DeepCluster's whitening is the default, DeepMCAT's l2 only is 0
    assert DeepCluster().zscore is False  # CT intensities kept (DeepMCAT's per-image z-scoring: True)
