"""The sample project ``make run`` opens: built on first use from the bundled cohort.

Import the 180 AdrenalMNIST3D shapes, sample 1024 surface points each, train DeepDiffusion
briefly (seeded, under a minute on 2 CPU cores), embed, project, cluster, mark a stratified
development set and map clusters to labels with Algorithm 1, so the first screen already
shows clusters and predictions.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .jobs.steps import run_to_end

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "sample"
COHORT = RESOURCES / "adrenalmnist3d_64.npz"
DEFAULT_EPOCHS = 4
#: Bumped whenever the recipe below changes what the sample shows (method settings, epochs,
#: clusters): a sample project built by an older recipe is rebuilt on the next start, and the
#: old one is kept next to it (``sample-project.recipe-N``) with whatever the user labelled there.
RECIPE = 4
MARKER = ".sample-complete"


def default_location() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "latentmap" / "sample-project"


def _recipe_of(path: Path) -> int | None:
    """The recipe a finished sample project was built by (1 for the markers before recipes),
    None when the folder holds no finished sample project."""
    marker = Path(path) / MARKER
    if not marker.exists():
        return None
    text = marker.read_text(encoding="utf-8", errors="replace").split()
    return int(text[1]) if len(text) == 2 and text[0] == "recipe" and text[1].isdigit() else 1


def is_complete(path: Path) -> bool:
    """A finished sample project built by the current recipe (an older one is rebuilt)."""
    return _recipe_of(path) == RECIPE


def build_sample_project(dest: Path | None = None, *, epochs: int = DEFAULT_EPOCHS,
                         on_progress: Callable | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or rebuild, when incomplete) the sample project at ``dest``; returns its path.

    Built in a temporary folder and renamed at the end, so an interrupted build never leaves
    a half project that would be opened next time.
    """
    return run_to_end(sample_project_steps(dest, epochs=epochs, log=log), on_progress)


def sample_project_steps(dest: Path | None = None, *, epochs: int = DEFAULT_EPOCHS,
                         log: Callable[[str], None] = print):
    """Generator (``core.jobs.Progress`` per step; closing it stops the build) behind
    :func:`build_sample_project`; returns the project's path."""
    from .jobs import Progress
    from .methods.registry import get_method
    from .project import Project
    from .workflows.apply import apply_run
    from .workflows.derive import import_and_derive_steps
    from .workflows.mapping import algorithm1
    from .workflows.runs import load_method_data
    from .workflows.training import train_steps

    dest = Path(dest or default_location())
    if is_complete(dest):
        return dest
    tmp = dest.with_name(dest.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    project = Project.create(tmp, name="LatentMap sample: adrenal gland shapes")
    log(f"sample project: importing {COHORT.name} and sampling surface points")
    report = yield from import_and_derive_steps(project, [COHORT], n_points=1024)
    log(f"sample project: {report.import_report.imported} shapes imported, "
        f"{len(report.points_ids) - len(report.points_failed)} point clouds")
    # memory_init="batch": the reference's eval-mode memory start leaves a short run's space
    # collapsed (neighbour cosine distances ~0.005); with batch statistics ~0.18 (issue 12)
    method = get_method("deepdiffusion")(epochs=epochs, batch_size=16, seed=0, out_dim=64, eval_every=0,
                                         memory_init="batch")
    data = load_method_data(project, method)
    log(f"sample project: training DeepDiffusion for {epochs} epochs on {int((data.split == 'train').sum())} shapes")
    job = yield from train_steps(project, method, data, name="deepdiffusion")
    if job.status != "finished":
        project.close()
        raise RuntimeError(f"sample project: training {job.status}")
    yield Progress(step=0, global_step=0, message="embedding, projecting and clustering")
    for line in apply_run(project, method, job.run_id, data=data, n_clusters=6):
        log(f"sample project: {line}")
    # the untrained PointNet's first map beside it, so the evaluation panel compares the trained
    # run with its baseline from the start (the trained run stays the active one)
    from .workflows.baseline import baseline_steps

    yield from baseline_steps(project)
    # A development set of 10% of the training shapes, both classes present.
    rng = np.random.default_rng(0)
    train = project.samples(split="train")
    labels = project.labels(train["id"].tolist())
    dev = []
    for name in project.label_names():
        ids = [s for s in train["id"] if name in labels.get(s, [])]
        dev += list(rng.choice(ids, max(2, len(ids) // 10), replace=False))
    project.set_dev(dev, author="sample")
    result = algorithm1(project, project.active_clustering_name)
    log(f"sample project: development set {len(dev)} shapes; Algorithm 1 mapped "
        f"{len(result.vectors)} clusters, {len(result.unmatched)} unmatched")
    # The demo starts with an empty undo history: marking the dev set was the builder's doing.
    with project.transaction() as c:
        c.execute("DELETE FROM history")
    project.close()
    (tmp / MARKER).write_text(f"recipe {RECIPE}\n", encoding="utf-8")
    _install(tmp, dest, log)
    return dest


def _install(built: Path, dest: Path, log: Callable[[str], None] = print) -> None:
    """Move the finished ``built`` folder to ``dest``. A sample project an older recipe built
    there is kept aside (``<dest>.recipe-N``) with whatever the user labelled in it."""
    old = _recipe_of(dest)
    if old is not None:
        aside = dest.with_name(f"{dest.name}.recipe-{old}")
        shutil.rmtree(aside, ignore_errors=True)
        dest.rename(aside)
        log(f"sample project: the one built by an older recipe is kept at {aside}")
    shutil.rmtree(dest, ignore_errors=True)
    built.rename(dest)
