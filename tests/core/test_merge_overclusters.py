"""``core.cluster.merge.merge_overclusters``: over-clusters joined by average-linkage
agglomeration of their centroids. Checked against SciPy's average linkage on a float64 oracle of
the centroids, on real OrganAMNIST pixels over-clustered by k-means."""
import numpy as np
import pytest

from core.cluster.merge import cluster_centroids, merge_overclusters, merge_soft_overclusters, merged_from_proba
from tests.conftest import organamnist_per_class


@pytest.fixture(scope="module")
def pixels_and_over():
    from sklearn.cluster import KMeans

    data = organamnist_per_class(20)                      # 220 real images, 11 organs
    x = data.x.reshape(len(data.x), -1).astype(np.float32) / 255.0
    over = KMeans(33, n_init=1, random_state=0).fit_predict(x)
    return x, over, data.y


def _same_partition(a, b) -> bool:
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b) == 1.0


def test_matches_scipy_average_linkage_on_float64_centroids(pixels_and_over):
    from scipy.cluster.hierarchy import fcluster, linkage

    x, over, _ = pixels_and_over
    merged = merge_overclusters(x, over, 11)
    # oracle: float64 unit rows, unit means, cosine average linkage cut at 11 groups
    x64 = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    used = np.unique(over)
    cents = np.stack([x64[over == c].mean(0) for c in used])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    groups = fcluster(linkage(cents, method="average", metric="cosine"), 11, criterion="maxclust")
    oracle = groups[np.searchsorted(used, over)]
    assert _same_partition(merged, oracle)
    _, ours = cluster_centroids(x, over)
    assert np.abs(ours - cents).max() < 1e-5


def test_each_over_cluster_goes_whole_into_one_of_k(pixels_and_over):
    x, over, _ = pixels_and_over
    merged = merge_overclusters(x, over, 5)
    assert set(merged.tolist()) == set(range(5))
    for c in np.unique(over):
        assert len(set(merged[over == c].tolist())) == 1
    # as many groups as used over-clusters: the over-clustering itself
    assert _same_partition(merge_overclusters(x, over, len(np.unique(over))), over)


def test_rows_outside_the_fit_mask(pixels_and_over):
    """Centroids from the masked rows only; a row of an over-cluster with no fitted row joins
    the group of its nearest fitted centroid."""
    x, over, _ = pixels_and_over
    fit = np.ones(len(x), bool)
    lone = over == over[0]
    fit[lone] = False
    over2 = over.copy()
    over2[lone] = over.max() + 1                     # an over-cluster that only unfitted rows use
    merged = merge_overclusters(x, over2, 6, fit_mask=fit)
    assert _same_partition(merged[fit], merge_overclusters(x[fit], over2[fit], 6))
    used, cents = cluster_centroids(x[fit], over2[fit])
    xl = x[lone] / np.linalg.norm(x[lone], axis=1, keepdims=True)
    nearest = used[np.argmax(xl @ cents.T, axis=1)]
    for row, c in zip(np.flatnonzero(lone), nearest):
        assert merged[row] == merged[fit][over2[fit] == c][0]


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_soft_merge_of_one_hot_probabilities_is_the_hard_merge(pixels_and_over):
    x, over, _ = pixels_and_over
    proba = np.eye(over.max() + 1)[over]
    merged, groups = merge_soft_overclusters(x, proba, 11)
    assert _same_partition(merged, merge_overclusters(x, over, 11))
    assert _same_partition(groups[over], merged)


def test_soft_merge_weighs_centroids_and_rows_by_probability(pixels_and_over):
    """Centroids: probability-weighted means of unit rows (float64 oracle); a row goes to the
    merged cluster holding most of its probability, not to its argmax over-cluster's."""
    from scipy.cluster.hierarchy import fcluster, linkage

    x, over, _ = pixels_and_over
    rng = np.random.default_rng(0)
    proba = _softmax(3.0 * np.eye(over.max() + 1)[over] + rng.normal(0, 1.0, (len(x), over.max() + 1)))
    merged, groups = merge_soft_overclusters(x, proba, 8)
    x64 = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cents = proba.T @ x64
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    oracle = fcluster(linkage(cents, method="average", metric="cosine"), 8, criterion="maxclust")
    assert _same_partition(groups, oracle)
    mass = np.stack([proba[:, groups == g].sum(1) for g in range(8)], 1)
    assert merged.tolist() == mass.argmax(1).tolist()
    assert merged_from_proba(proba, groups).tolist() == merged.tolist()
    # some rows' argmax over-cluster lies in another group than most of their probability
    assert (groups[proba.argmax(1)] != merged).any()


def test_soft_merge_does_not_hang_on_near_ties(pixels_and_over):
    """Rows split almost evenly between two over-clusters: a perturbation far below the
    probabilities' scale flips many argmaxes, and so the hard merge's rows, but not the soft one's."""
    x, over, _ = pixels_and_over
    rng = np.random.default_rng(1)
    k = over.max() + 1
    twin = (over + 1) % k                           # each row near-tied with a second over-cluster
    proba = 0.45 * np.eye(k)[over] + 0.45 * np.eye(k)[twin] + 0.1 / k
    noisy = proba + rng.normal(0, 1e-3, proba.shape).clip(-0.05, 0.05)
    noisy = noisy.clip(1e-6) / noisy.clip(1e-6).sum(1, keepdims=True)
    from sklearn.metrics import adjusted_rand_score

    assert np.mean(proba.argmax(1) != noisy.argmax(1)) > 0.2
    soft = adjusted_rand_score(merge_soft_overclusters(x, proba, 11)[0], merge_soft_overclusters(x, noisy, 11)[0])
    hard = adjusted_rand_score(merge_overclusters(x, proba.argmax(1), 11), merge_overclusters(x, noisy.argmax(1), 11))
    assert soft > 0.95 and soft > hard + 0.1


def test_an_over_cluster_without_mass_joins_its_nearest_group(pixels_and_over):
    x, over, _ = pixels_and_over
    k = over.max() + 1
    proba = np.hstack([np.eye(k)[over], np.full((len(x), 1), 1e-9)])  # one column nobody holds
    proba /= proba.sum(1, keepdims=True)
    merged, groups = merge_soft_overclusters(x, proba, 5)
    assert len(groups) == k + 1 and set(groups.tolist()) == set(range(5))
    assert _same_partition(merged, merge_overclusters(x, over, 5))


def test_bad_input_is_refused(pixels_and_over):
    x, over, _ = pixels_and_over
    with pytest.raises(ValueError, match="probabilities of shape"):
        merge_soft_overclusters(x[:-1], np.eye(33)[over], 5)
    with pytest.raises(ValueError, match="for 3 over-clusters"):
        merged_from_proba(np.eye(33)[over], [0, 1, 2])
    with pytest.raises(ValueError, match="33 used clusters into 34"):
        merge_overclusters(x, over, 34)
    with pytest.raises(ValueError, match="feature rows"):
        merge_overclusters(x[:-1], over, 5)
