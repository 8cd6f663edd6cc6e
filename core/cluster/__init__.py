"""Clustering of embeddings and the mapping of clusters to labels (Algorithm 1)."""
from .kmeans import kmeans, l2_normalise

__all__ = ["kmeans", "l2_normalise"]
