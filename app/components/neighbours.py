"""Nearest neighbours in the latent space and a kNN label vote (no Qt).

Cosine distance on L2-normalised embeddings: the methods train with normalised features
(DeepDiffusion, SimCLR, PICA), so the angle, not the norm, carries the similarity.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def l2_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def knn_cosine(features: np.ndarray, query: int, k: int = 8, *, normalised: bool = False):
    """Indices and cosine distances (1 - cos) of the ``k`` rows nearest to row ``query``,
    nearest first, the query itself excluded."""
    f = features if normalised else l2_rows(features)
    if not 0 <= query < len(f):
        raise IndexError(f"query row {query} outside 0..{len(f) - 1}")
    # one kNN for the app and the engine (core.workflows.place.knn: float64 distances, 4 s.f.)
    from core.workflows.place import knn

    idx, dist = knn(f, f[query:query + 1], k, exclude=np.array([query]))[0]
    return idx, dist


def knn_vote(neighbour_labels: list[list[str]], distances=None, *, weighted: bool = True):
    """Label vote among the neighbours that have labels.

    Returns ``(label, confidence, votes)``: the winning label (``""`` when no neighbour is
    labelled), its share of the vote in [0, 1], and every label's share. With ``weighted``, a
    neighbour's vote counts ``1 - distance/2`` so closer cases weigh more; a multi-label
    neighbour splits its vote over its labels.
    """
    votes: Counter = Counter()
    total = 0.0
    for j, labels in enumerate(neighbour_labels):
        if not labels:
            continue
        w = 1.0
        if weighted and distances is not None:
            w = max(1e-3, 1.0 - float(distances[j]) / 2.0)
        for lab in labels:
            votes[lab] += w / len(labels)
        total += w
    if total == 0:
        return "", 0.0, {}
    shares = {lab: v / total for lab, v in votes.most_common()}
    best = next(iter(shares))
    return best, float(shares[best]), shares


@dataclass
class Neighbour:
    id: str
    distance: float
    labels: list[str] = field(default_factory=list)


@dataclass
class NeighbourResult:
    query: str
    neighbours: list[Neighbour]
    vote: str
    confidence: float
    shares: dict
    predicted: str  # Algorithm-1 label of the query's cluster ('' when none)


class NeighbourIndex:
    """Embedding of the active run, normalised once, looked up by sample id."""

    def __init__(self, ids, features):
        self.ids = np.asarray(ids).astype(str)
        self.features = l2_rows(features)
        self.row = {s: i for i, s in enumerate(self.ids)}

    def __contains__(self, sample_id) -> bool:
        return sample_id in self.row

    def query(self, sample_id: str, k: int = 8):
        idx, dist = knn_cosine(self.features, self.row[sample_id], k, normalised=True)
        return [str(s) for s in self.ids[idx]], dist


def neighbours_of(model, sample_id: str, k: int = 8, index: NeighbourIndex | None = None) -> NeighbourResult | None:
    """Everything the neighbour strip shows for ``sample_id`` (None without an embedding)."""
    if index is None:
        emb = model.embedding()
        if emb is None:
            return None
        index = NeighbourIndex(*emb)
    if sample_id not in index:
        return None
    ids, dist = index.query(sample_id, k)
    labels = model.labels()
    nbrs = [Neighbour(i, float(d), list(labels.get(i, []))) for i, d in zip(ids, dist)]
    vote, conf, shares = knn_vote([n.labels for n in nbrs], dist)
    predicted = model.predicted_labels().get(sample_id, "")
    return NeighbourResult(sample_id, nbrs, vote, conf, shares, predicted)
