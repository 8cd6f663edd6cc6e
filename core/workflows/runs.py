"""Which run a command means, its method loaded from its checkpoint, and the data it reads."""
from __future__ import annotations

from ..dataset import SampleSet, from_project
from ..project.accessors import embedding_key, projection_key, run_id_of, run_name  # noqa: F401 (one spelling)


def load_method_data(project, method, *, dataset: str | None = None, ids=None) -> SampleSet:
    """The method's own ``load_data(project, dataset=)`` when it has one, else by ``input_kind``;
    ``ids`` keeps only those samples (e.g. the new ones to place)."""
    if hasattr(method, "load_data"):
        data = method.load_data(project, dataset=dataset)
        if ids is not None:
            import numpy as np

            data = data.subset(np.isin(data.ids, np.asarray(list(ids), dtype=str)))
        return data
    kind = getattr(method, "input_kind", "")
    if not kind:
        raise ValueError(f"{type(method).__name__} declares no input_kind")
    return from_project(project, kind=kind, dataset=dataset, ids=ids)


def pick_run(project, run_id: int | None = None) -> dict:
    """The run asked for, else the project's active run, else the latest run with a checkpoint."""
    if run_id is not None:
        return project.run(int(run_id))
    active = project.active_run_id
    if active is not None:
        return project.run(active)
    runs = project.runs()
    if len(runs):
        from ..jobs import UNUSABLE

        runs = runs[(runs["checkpoint"].fillna("").astype(str) != "") & ~runs["status"].isin(UNUSABLE)]
    if len(runs) == 0:
        raise ValueError(f"no trained run with a checkpoint in {project.path}; run `latentmap train` first")
    return project.run(int(runs["id"].iloc[-1]))


def pick_embedded_run(project, run_id: int | None = None) -> int:
    """The run asked for (it must have an embedding), else the active run's, else the latest
    embedded run."""
    if run_id is not None:
        if not project.has_embedding(run_id):
            raise ValueError(f"run {run_id} has no stored embedding ({embedding_key(run_id)}); "
                             f"run `latentmap embed --run {run_id}`")
        return int(run_id)
    active = project.active_run_id
    if active is not None and project.has_embedding(active):
        return active
    runs = project.embedded_runs()
    if not runs:
        raise ValueError(f"no stored embedding in {project.path}; make the first map without training "
                         "(`latentmap import --first-map ...`, or open the project in the app) or run "
                         "`latentmap train` first")
    return runs[-1]


def method_class(name: str):
    from ..methods.registry import FINETUNERS, METHODS, get_finetuner, get_method

    if name in METHODS:
        return get_method(name)
    if name in FINETUNERS:
        return get_finetuner(name)
    from .baseline import BASELINES

    if name in BASELINES:  # the first map: PCA of pixels / the untrained PointNet
        return BASELINES[name]
    raise ValueError(f"unknown method {name!r}")


def load_run_method(run: dict, project=None):
    """A trained run's method, rebuilt from its checkpoint (with ``project``: the checkpoint is
    looked up inside the project folder, wherever the folder has moved; a recorded path leading
    outside it is refused)."""
    cls = method_class(run["method"])
    if project is not None:
        from ..jobs.checkpoint import run_checkpoint_path
        from .baseline import BASELINES, refit_first_map

        if run["method"] in BASELINES and not run.get("checkpoint"):
            return refit_first_map(project, run)

        return cls.from_checkpoint(run_checkpoint_path(project, run))
    if not run.get("checkpoint"):
        raise ValueError(f"run {run['id']} ({run['method']}) has no checkpoint")
    return cls.from_checkpoint(run["checkpoint"])
