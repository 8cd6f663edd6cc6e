"""``core.cluster.merge.merge_overclusters``: over-clusters joined by average-linkage
agglomeration of their centroids. Checked against SciPy's average linkage on a float64 oracle of
the centroids, on real OrganAMNIST pixels over-clustered by k-means."""
import numpy as np
import pytest

from core.cluster.merge import merge_overclusters, cluster_centroids
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


def test_bad_input_is_refused(pixels_and_over):
    x, over, _ = pixels_and_over
    with pytest.raises(ValueError, match="33 used clusters into 34"):
        merge_overclusters(x, over, 34)
    with pytest.raises(ValueError, match="feature rows"):
        merge_overclusters(x[:-1], over, 5)
