"""Glue between a project and a method: which data a method reads, what a finished run writes.

Both the CLI and the app's training panel call these, so a run trained in either place leaves
the same embeddings, projections and clustering in the project.
"""
from __future__ import annotations

import numpy as np

from .dataset import SampleSet, from_project


def load_method_data(project, method, *, dataset: str | None = None) -> SampleSet:
    """The method's own ``load_data(project, dataset=)`` when it has one, else by ``input_kind``."""
    if hasattr(method, "load_data"):
        return method.load_data(project, dataset=dataset)
    kind = getattr(method, "input_kind", "")
    if not kind:
        raise ValueError(f"{type(method).__name__} declares no input_kind")
    return from_project(project, kind=kind, dataset=dataset)


def run_name(run_id: int) -> str:
    return f"run-{int(run_id):04d}"


def apply_run(project, method, run_id: int, *, dataset: str | None = None,
              n_clusters: int | None = None, data: SampleSet | None = None) -> list[str]:
    """Embed every sample the method can read, store the embedding, its PCA and a clustering.

    The clustering is the method's own (``predict_clusters``, e.g. PICA's head) when it has one,
    else k-means on the embedding with one cluster per known label (10 when unlabelled). Then
    the method's ``save_outputs`` hook. Returns lines for a summary.
    """
    from .cluster import kmeans
    from .projection import pca_project

    data = data if data is not None else load_method_data(project, method, dataset=dataset)
    name = run_name(run_id)
    emb = np.asarray(method.transform(data), dtype=np.float32)
    project.arrays.save(f"embeddings/{name}", emb, ids=data.ids)
    fit_mask = data.split == "train"
    proj = pca_project(emb, fit_mask=fit_mask if fit_mask.any() else None)
    project.arrays.save(f"projections/{name}-pca", proj, ids=data.ids)
    if hasattr(method, "predict_clusters"):
        assign = np.asarray(method.predict_clusters(data), dtype=int)
        cname = f"{name}-head"
    else:
        k = n_clusters or (len(data.label_names) if data.label_names else 10)
        assign = kmeans(emb, k, seed=int(getattr(method, "seed", 0) or 0))
        cname = f"{name}-kmeans{k}"
    project.save_clustering(cname, data.ids, assign, run_id=run_id,
                            params={"source": cname.split("-")[-1]})
    project.set_meta("active_run", str(run_id))
    project.set_meta("active_clustering", cname)
    return [f"embedding: embeddings/{name} ({emb.shape[0]} x {emb.shape[1]})",
            f"projection: projections/{name}-pca",
            f"clustering: {cname} ({len(np.unique(assign))} clusters)"] + save_outputs(project, method, run_id)


def save_outputs(project, method, run_id: int) -> list[str]:
    """Whatever else a finished run leaves for the app (residual maps, ...): the method's own
    ``save_outputs(project, run_id)`` hook, when it has one."""
    hook = getattr(method, "save_outputs", None)
    return list(hook(project, run_id)) if hook is not None else []
