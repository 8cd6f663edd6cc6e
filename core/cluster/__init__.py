"""Clustering of embeddings and the mapping of clusters to labels (Algorithm 1)."""
from .kmeans import kmeans, l2_normalise
from .match import (ClusterMatch, cluster_scores, fit_cluster_thresholds, match_clusters, match_to_vectors,
                    predict_from_clusters, save_match)

__all__ = ["kmeans", "l2_normalise", "ClusterMatch", "match_clusters", "cluster_scores",
           "predict_from_clusters", "fit_cluster_thresholds", "match_to_vectors", "save_match"]
