"""Clusterings of a run's embedding: the first one a run gets, explicit re-clustering (a new,
undoable clustering; the old one keeps its name, mapping and overrides), a method's
over-clustering head as a clustering of its own, and the nearest existing cluster of new
samples."""
from __future__ import annotations

import numpy as np

from ..jobs.progress import Progress
from ..project.accessors import default_clustering_name, embedding_key, run_name

# a clustering's ``source`` -> the method's prediction that made it (and places new samples in it)
HEAD_PREDICTIONS = {"head": "predict_clusters", "head-over": "predict_overclusters"}
# the over-clustering head's probabilities: what a soft merge of its clusters weighs by
OVER_PROBA = "predict_overcluster_proba"


def by_head(params: dict) -> bool:
    """Whether new samples join a clustering of these ``params`` by the method's heads (its
    head's own clusters, or a soft merge of its over-clustering head) rather than by centroids."""
    return params.get("source") in HEAD_PREDICTIONS or (params.get("source") == "merged" and "groups" in params)


def head_assign(method, params: dict | str | None, data) -> np.ndarray | None:
    """The clusters of ``data`` from the method head that made a clustering of these ``params``
    (or of this ``source``): "head", the target head; "head-over", the over-clustering head;
    "merged" with ``groups``, the over-clustering head's probabilities summed per merged
    cluster. None when the clustering is not a head's or the method (or the data) is not at hand."""
    params = {"source": params} if not isinstance(params, dict) else params
    if method is None or data is None or not by_head(params):
        return None
    if params["source"] == "merged":
        from ..cluster.merge import merged_from_proba

        fn = getattr(method, OVER_PROBA, None)
        return None if fn is None else merged_from_proba(fn(data), params["groups"])
    fn = getattr(method, HEAD_PREDICTIONS[params["source"]], None)
    return None if fn is None else np.asarray(fn(data), dtype=int)


def _predict_steps(predict, data, what: str, chunk: int):
    """Step generator: ``predict`` on ``data`` in subsets of ``chunk`` samples, a progress step
    after each; returns the parts concatenated."""
    n_steps, parts = -(-len(data) // chunk), []
    for i, start in enumerate(range(0, len(data), chunk)):
        stop = min(len(data), start + chunk)
        parts.append(predict(data.subset(np.arange(start, stop))))
        yield Progress(step=i + 1, global_step=i + 1, n_epochs=1, steps_per_epoch=n_steps,
                       message=f"{what}: {stop}/{len(data)} samples")
    return np.concatenate(parts)


def kmeans_assign(features, k: int, *, seed: int = 0) -> np.ndarray:
    """k-means (on l2-normalised rows) -> cluster per row. The one caller of ``core.cluster.kmeans``."""
    from ..cluster import kmeans

    return kmeans(np.asarray(features, dtype=np.float32), int(k), seed=int(seed))


def default_k(project, ids) -> int:
    """One cluster per label the samples carry, 10 when they carry none; never more clusters
    than samples (a new project of three structures still gets its first map)."""
    names, _ = project.labels_in_use(list(ids))
    return max(1, min(len(names) or 10, len(ids)))


def checked_k(project, ids, k: int | None) -> int:
    """``k`` (or :func:`default_k` when None), refused when it is below 1 or above the sample count."""
    k = int(k or default_k(project, ids))
    if k < 1:
        raise ValueError(f"the number of clusters must be >= 1, got {k}")
    if k > len(ids):
        raise ValueError(f"{k} clusters exceed the {len(ids)} samples to cluster")
    return k


def first_clustering(project, run_id: int, ids, features, *, method=None, data=None,
                     n_clusters: int | None = None, seed: int = 0) -> tuple[str, bool]:
    """The run's clustering: created when the run has none yet (the method's own clusters, e.g.
    PICA's head, else k-means with ``n_clusters`` or one per label), never replaced when it has
    one. Returns ``(name, created)``."""
    existing = project.clustering_names(run_id)
    if existing and n_clusters is None:
        active = project.active_clustering_name
        return (active if active in existing else existing[-1]), False
    head = head_assign(method, "head", data) if n_clusters is None else None
    if head is not None:
        assign = head
        base, params = default_clustering_name(run_id, "head"), {"source": "head"}
    else:
        k = checked_k(project, ids, n_clusters)
        assign = kmeans_assign(features, k, seed=seed)
        base = default_clustering_name(run_id, f"kmeans{k}")
        params = {"source": "kmeans", "k": k, "seed": seed, "embedding": embedding_key(run_id)}
    name = project.unique_clustering_name(base)
    project.save_clustering(name, [str(s) for s in ids], assign, run_id=run_id, params=params)
    return name, True


def recluster(project, run_id: int | None = None, *, k: int | None = None, ids=None, seed: int = 0,
              name: str | None = None, activate: bool = True, author=None) -> str:
    """k-means on a run's stored embedding (all of it or only ``ids``) saved as a NEW clustering
    (an undoable action; the old clustering keeps its name, Algorithm-1 mapping and overrides).
    Returns the new clustering's name (``run-0001-kmeans6``, ``…-2`` when taken)."""
    from .runs import pick_embedded_run

    run_id = pick_embedded_run(project, run_id)
    all_ids, emb = project.embedding(run_id)
    subset = ids is not None
    if subset:
        pos = {s: i for i, s in enumerate(all_ids)}
        want = list(dict.fromkeys(str(s) for s in ids))
        missing = [s for s in want if s not in pos]
        if missing:
            raise ValueError(f"{len(missing)} ids are not in {embedding_key(run_id)} (first: {missing[0]!r})")
        sel = np.array([pos[s] for s in want], dtype=int)
        all_ids, emb = all_ids[sel], emb[sel]
    k = checked_k(project, all_ids, k)
    assign = kmeans_assign(emb, k, seed=seed)
    base = name or f"{run_name(run_id)}-kmeans{k}" + ("-subset" if subset else "")
    new = project.unique_clustering_name(base) if name is None else name
    runs = project.runs()
    known = set(runs["id"].astype(int)) if len(runs) else set()
    project.add_clustering(new, list(all_ids), assign, run_id=run_id if run_id in known else None,
                           params={"source": "kmeans", "k": k, "seed": seed, "subset": subset,
                                   "embedding": embedding_key(run_id)},
                           activate=activate, author=author)
    return new


def overclustering_steps(project, run_id: int | None = None, *, name: str | None = None,
                         activate: bool = True, author=None, chunk: int = 4096):
    """Step generator: the run's over-clustering head (PICA's, 7 x K clusters by default) on
    every sample of its embedding, saved as a NEW clustering ``run-XXXX-head-over`` (undoable;
    the run's K-cluster clustering keeps its mapping and overrides). Finer clusters are what
    Algorithm 1 maps to labels best: on OrganAMNIST the over-clustering head's mapping scored
    F1 0.78 against 0.70 for the 11-cluster head (``bench/results/pica_transductive_full30``).
    One step per ``chunk`` samples; returns the clustering's name."""
    from .runs import load_method_data, load_run_method, pick_embedded_run

    run_id = pick_embedded_run(project, run_id)
    run = project.run(run_id)
    yield Progress(message=f"loading {run_name(run_id)} ({run['method']})")
    method = load_run_method(run, project)
    if not hasattr(method, HEAD_PREDICTIONS["head-over"]):
        raise ValueError(f"{run_name(run_id)} ({run['method']}) has no over-clustering head (PICA runs "
                         "have one); re-cluster its embedding with k-means and a larger K instead")
    ids, _ = project.embedding(run_id)
    data = load_method_data(project, method, ids=ids)
    if len(data) == 0:
        raise ValueError(f"{project.path}: none of the {len(ids)} samples of {embedding_key(run_id)} "
                         f"can be read by {run['method']}")
    assign = yield from _predict_steps(lambda part: head_assign(method, "head-over", part), data,
                                       "over-clustering head", chunk)
    # an explicit name is taken as given (add_clustering refuses one in use), as in recluster
    new = name or project.unique_clustering_name(default_clustering_name(run_id, "head-over"))
    project.add_clustering(new, [str(s) for s in data.ids], assign, run_id=run_id,
                           params={"source": "head-over", "head_clusters": int(method.head_sizes_[0])},
                           activate=activate, author=author)
    return new


def cluster_from_overclustering_head(project, run_id: int | None = None, *, on_step=None, **kw) -> str:
    """:func:`overclustering_steps` run to the end in the caller's thread."""
    from ..jobs.steps import run_to_end

    return run_to_end(overclustering_steps(project, run_id, **kw), on_step)


def merge_steps(project, clustering: str | None = None, *, k: int, name: str | None = None,
                activate: bool = True, author=None, chunk: int = 4096):
    """Step generator: a clustering's clusters joined into ``k`` by average linkage of their
    centroids in the run's stored embedding (``core.cluster.merge``), saved as a NEW clustering
    ``<clustering>-merged<k>`` (undoable; the fine clustering keeps its mapping and overrides).
    Meant for an over-clustering. On OrganAMNIST it gave DeepCluster's K clusters +0.09 to
    +0.16 accuracy over K-means on its features (``bench/results/merged_overclusters.md``).

    A clustering from PICA's over-clustering head ("head-over") is merged by the head's
    probabilities (``merge_soft_overclusters``; one step per ``chunk`` samples to predict them),
    as its argmax flips between near-tied clusters; the merged clustering keeps each
    over-cluster's group, so new samples join it by the same head. Returns the new name."""
    from ..cluster.merge import merge_overclusters, merge_soft_overclusters

    clustering = clustering or project.active_clustering_name
    if not clustering or not project.has_clustering(clustering):
        raise ValueError(f"no clustering named {clustering!r} to merge")
    info = project.clustering_info(clustering)
    run_id = info["run_id"]
    if run_id is None or not project.has_embedding(run_id):
        raise ValueError(f"clustering {clustering!r} belongs to no run with a stored embedding: "
                         "its clusters have no centroids to merge by")
    assigned = project.cluster_assignments(clustering)
    all_ids, emb = project.embedding(run_id)
    rows = np.array([i for i, s in enumerate(all_ids) if str(s) in assigned], dtype=int)
    ids = [str(all_ids[i]) for i in rows]
    fine = np.array([assigned[s] for s in ids], dtype=int)
    n_used = len(np.unique(fine))
    k = int(k)
    if not 1 <= k < n_used:
        raise ValueError(f"clustering {clustering!r} has {n_used} clusters: merging needs 1 <= k < {n_used}, got {k}")
    params = {"source": "merged", "from": clustering, "k": k, "linkage": "average",
              "embedding": embedding_key(run_id)}
    proba = None
    if info["params"].get("source") == "head-over":
        from .runs import load_method_data, load_run_method

        run = project.run(run_id)
        yield Progress(message=f"loading {run_name(run_id)} ({run['method']}) for its over-clustering head")
        method = load_run_method(run, project)
        data = load_method_data(project, method, ids=ids) if hasattr(method, OVER_PROBA) else None
        if data is not None and len(data) == len(ids):
            pos = {s: i for i, s in enumerate(ids)}
            rows, ids = rows[[pos[str(s)] for s in data.ids]], [str(s) for s in data.ids]
            proba = yield from _predict_steps(getattr(method, OVER_PROBA), data,
                                              "over-clustering head probabilities", chunk)
        else:
            yield Progress(message=f"{run['method']} cannot give over-clustering probabilities for all "
                                   f"{len(ids)} samples: merging {clustering}'s stored clusters")
    if proba is not None:
        assign, groups = merge_soft_overclusters(np.asarray(emb)[rows], proba, k)
        params.update(soft=True, groups=[int(g) for g in groups])
    else:
        assign = merge_overclusters(np.asarray(emb)[rows], fine, k)
    yield Progress(message=f"merged {n_used} clusters of {clustering} into {k}")
    new = name or project.unique_clustering_name(f"{clustering}-merged{k}")
    project.add_clustering(new, ids, assign, run_id=run_id, params=params, activate=activate, author=author)
    return new


def merge_clustering(project, clustering: str | None = None, *, on_step=None, **kw) -> str:
    """:func:`merge_steps` run to the end in the caller's thread."""
    from ..jobs.steps import run_to_end

    return run_to_end(merge_steps(project, clustering, **kw), on_step)


def centroids(project, clustering: str, ids, features, *, row: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(cluster ids, K x D unit centroids)``: the normalised mean of each cluster's normalised
    members (k-means here runs on l2-normalised rows), from the stored assignments. ``row``:
    id -> row of ``ids`` when the caller has it (then only the clustering's members are walked)."""
    from ..cluster.merge import cluster_centroids

    assigned = project.cluster_assignments(clustering)
    if row is None:
        ids = np.asarray(ids).astype(str)
        rows = np.array([i for i, s in enumerate(ids) if s in assigned], dtype=int)
        k_of = np.array([assigned[ids[i]] for i in rows], dtype=int)
    else:
        pairs = sorted((row[s], k) for s, k in assigned.items() if s in row)
        rows = np.array([i for i, _ in pairs], dtype=int)
        k_of = np.array([k for _, k in pairs], dtype=int)
    if len(rows) == 0:
        raise ValueError(f"clustering {clustering!r} has no sample in this embedding")
    return cluster_centroids(np.asarray(features)[rows], k_of)


def nearest_cluster(cluster_ids: np.ndarray, cents: np.ndarray, features) -> np.ndarray:
    """The cluster of the nearest centroid (cosine) of each row of ``features``."""
    from ..cluster import l2_normalise

    f = l2_normalise(np.atleast_2d(np.asarray(features, dtype=np.float32)))
    return np.asarray(cluster_ids)[np.argmax(f @ cents.T, axis=1)]


def run_clustering(project, run_id: int) -> str | None:
    """The clustering a run is judged by: the active clustering when it belongs to this run,
    else the run's latest; None when the run has none (another run's clustering never is)."""
    mine = project.clustering_names(run_id)
    active = project.active_clustering_name
    if active in mine:
        return active
    return mine[-1] if mine else None
