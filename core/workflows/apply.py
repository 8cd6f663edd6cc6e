"""A trained run applied to a project: embedding, PCA, the run's clustering, and the method's
extra outputs. Both the CLI (``train``, ``embed``) and the app's training panel call this, so a
run trained in either place leaves the same arrays and tables.

Applying a run again (``latentmap embed``) never re-clusters under an existing name: the run's
clustering, its Algorithm-1 mapping and manual overrides stay as they are, and samples that
were not in it yet are placed into its nearest existing clusters. A different number of
clusters (``n_clusters``) makes a NEW clustering (undoable), the old one stays.
"""
from __future__ import annotations

import numpy as np

from ..dataset import SampleSet
from ..project.accessors import embedding_key, projection_key
from .runs import load_method_data


def apply_run(project, method, run_id: int, *, dataset: str | None = None,
              n_clusters: int | None = None, data: SampleSet | None = None, seed: int | None = None) -> list[str]:
    """Embed every sample the method reads; store the embedding, its PCA and the run's
    clustering; make the run active. Returns lines for a summary."""
    from .clustering import first_clustering, recluster

    _check_usable(project, run_id)
    data = data if data is not None else load_method_data(project, method, dataset=dataset)
    if len(data) == 0:
        raise ValueError(f"{project.path}: no sample that {type(method).__name__} can read "
                         f"(input: {getattr(method, 'input_kind', '?')})")
    emb = np.asarray(method.transform(data), dtype=np.float32)
    _check_not_collapsed(project, run_id, emb, method)
    project.save_embedding(run_id, data.ids, emb)
    fit_mask = data.split == "train"
    from .projections import store_pca

    store_pca(project, run_id, data.ids, emb, fit_mask=fit_mask if fit_mask.any() else None)
    seed = int(seed if seed is not None else (getattr(method, "seed", 0) or 0))
    lines = [f"embedding: {embedding_key(run_id)} ({emb.shape[0]} x {emb.shape[1]})",
             f"projection: {projection_key(run_id, 'pca')}"]
    existing = project.clustering_names(run_id)
    if existing and n_clusters is not None:
        name = recluster(project, run_id, k=n_clusters, seed=seed)
        lines.append(f"clustering: {name} (new; the earlier {', '.join(existing)} kept)")
    else:
        name, created = first_clustering(project, run_id, data.ids, emb, method=method, data=data,
                                         n_clusters=n_clusters, seed=seed)
        if created:
            k = project.clustering_info(name)["n_clusters"]
            lines.append(f"clustering: {name} ({k} clusters)")
        else:
            added = place_into_clustering(project, name, data.ids, emb, method=method, data=data)
            lines.append(f"clustering: {name} kept (mapping and overrides untouched); "
                         f"{added} new samples placed in their nearest clusters")
    project.set_meta("active_run", str(int(run_id)))
    project.set_meta("active_clustering", name)
    return lines + save_outputs(project, method, run_id)


def _check_usable(project, run_id: int) -> None:
    """A failed, diverged or collapsed run is never applied nor made active."""
    from ..jobs import UNUSABLE
    from ..project import ProjectError

    try:
        run = project.run(run_id)
    except ProjectError:
        return  # not a recorded run (e.g. a method applied directly): nothing to check
    if run.get("status") in UNUSABLE:
        why = f": {run['message']}" if run.get("message") else ""
        raise ValueError(f"run {run_id} {run['status']}{why}. It is not applied and not made the "
                         "active run; train again (e.g. with a lower learning rate)")


def _check_not_collapsed(project, run_id: int, emb, method) -> None:
    """Record a collapsed embedding on the run (status ``collapsed``) and stop with why."""
    from ..jobs import COLLAPSED
    from ..metrics.collapse import embedding_health
    from ..methods.base import EmbeddingCollapsed, _fmt_lr
    from ..project import ProjectError

    health = embedding_health(emb)
    if not health.collapsed:
        return
    params = method.get_params() if hasattr(method, "get_params") else {}
    lr = params.get("lr")
    hint = (f"the learning rate {_fmt_lr(lr)} is likely too high; lower it and train again"
            if lr is not None else "train again with a lower learning rate")
    msg = (f"training collapsed the embedding: {health.reason}; {hint}. "
           "The run is not applied and not made the active run")
    try:
        project.update_run(run_id, status=COLLAPSED, message=msg)
    except ProjectError:
        pass
    raise EmbeddingCollapsed(msg)


def place_into_clustering(project, clustering: str, ids, features, *, method=None, data=None) -> int:
    """Assign the samples of ``ids`` that ``clustering`` does not hold yet: the method's own
    head when the clustering came from it, else the nearest existing centroid. Rows already in
    the clustering are not touched. Returns how many were added."""
    from .clustering import centroids, head_assign, nearest_cluster

    ids = np.asarray(ids).astype(str)
    have = project.cluster_assignments(clustering)
    new = np.array([s not in have for s in ids])
    if not new.any():
        return 0
    params = project.clustering_info(clustering)["params"]
    assign = head_assign(method, params, None if data is None else data.subset(np.flatnonzero(new)))
    if assign is None:
        labels, cents = centroids(project, clustering, ids[~new], np.asarray(features)[~new])
        assign = nearest_cluster(labels, cents, np.asarray(features)[new])
    return project.add_cluster_assignments(clustering, list(ids[new]), assign)


def save_outputs(project, method, run_id: int) -> list[str]:
    """Whatever else a finished run leaves for the app (residual maps, ...): the method's own
    ``save_outputs(project, run_id)`` hook, when it has one."""
    hook = getattr(method, "save_outputs", None)
    return list(hook(project, run_id)) if hook is not None else []
