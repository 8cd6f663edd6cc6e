"""Algorithm-1 predictions as a user can judge them, for the views: the one implementation is
``core.workflows.mapping`` (manual override > Algorithm 1; labels >= 0.5; score, support, a
low-support flag, and why there is none); this module only adds the model-level helpers."""
from __future__ import annotations

from core.workflows.mapping import MIN_SUPPORT, THRESHOLD, Prediction, cluster_predictions  # noqa: F401

__all__ = ["MIN_SUPPORT", "THRESHOLD", "Prediction", "cluster_predictions", "sample_predictions",
           "prediction_for"]


def sample_predictions(model) -> dict[str, Prediction]:
    """sample id -> Prediction for the samples of the model's active clustering."""
    cl = model.clustering()
    if cl is None:
        return {}
    per = cluster_predictions(model.project, model.active_clustering)
    return {sid: per[int(c)] for sid, c in cl.items() if int(c) in per}


def prediction_for(model, sample_id: str, cache: dict | None = None) -> Prediction:
    """The Prediction of one sample, with a reason when the sample is outside the clustering."""
    if not model.active_clustering:
        return Prediction(reason="no clustering yet: train or apply a method, then cluster")
    if cache is not None:
        p = cache.get(sample_id)
    else:
        c = model.project.cluster_assignments(model.active_clustering, [sample_id]).get(sample_id)
        p = None if c is None else cluster_predictions(model.project, model.active_clustering).get(int(c))
    if p is None:
        return Prediction(reason=f"not in clustering {model.active_clustering}")
    return p
