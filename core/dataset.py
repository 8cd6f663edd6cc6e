"""``SampleSet``: what every method's ``fit``/``transform`` receives.

A plain in-memory view (ids, arrays, labels, splits) so methods are testable on arrays alone,
and ``from_project`` builds one from a project's store.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np


@dataclass
class SampleSet:
    """``x``: stacked array (N x ...) — images N x H x W, volumes N x D x H x W, points N x P x 3.

    ``y``: N x C multi-hot float32 over ``label_names`` or None when unlabelled; rows of
    samples without any label are all zero and ``labelled`` is False for them.
    ``split``: 'train' / 'val' / 'test' / '' per sample; ``dev``: development-set flags.
    """

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    split: np.ndarray | None = None
    dev: np.ndarray | None = None

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        if len(self.x) != n:
            raise ValueError(f"{n} ids but {len(self.x)} arrays")
        if self.split is None:
            self.split = np.array([""] * n)
        self.split = np.asarray(self.split).astype(str)
        if self.dev is None:
            self.dev = np.zeros(n, dtype=bool)
        self.dev = np.asarray(self.dev, dtype=bool)
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.float32)
            if self.y.ndim == 1:  # integer class ids -> one-hot
                classes = self.y.astype(int)
                k = max(len(self.label_names), classes.max() + 1 if n else 0)
                onehot = np.zeros((n, k), dtype=np.float32)
                onehot[np.arange(n), classes] = 1
                self.y = onehot

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labelled(self) -> np.ndarray:
        if self.y is None:
            return np.zeros(len(self), dtype=bool)
        return self.y.sum(1) > 0

    @property
    def class_index(self) -> np.ndarray:
        """Single-label view: argmax of ``y``, -1 where unlabelled."""
        if self.y is None:
            return np.full(len(self), -1)
        out = self.y.argmax(1)
        out[~self.labelled] = -1
        return out

    def subset(self, index) -> "SampleSet":
        index = np.asarray(index)
        return replace(
            self, ids=self.ids[index], x=self.x[index],
            y=None if self.y is None else self.y[index],
            split=self.split[index], dev=self.dev[index],
        )

    def by_split(self, *splits: str) -> "SampleSet":
        return self.subset(np.isin(self.split, splits))


def _complete_points(project, df) -> None:
    """Point clouds the selected shapes lack (an import or point step that was killed, an
    import with --no-points) are computed before the data is read, so training never fails on
    a missing ``points`` array or silently drops shapes. A read-only project raises instead."""
    from .workflows.derive import missing_point_ids, points_steps, project_n_points

    todo = missing_point_ids(project, df["id"].tolist())
    if not todo:
        return
    if getattr(project, "read_only", False):
        raise ValueError(f"{project.path}: {len(todo)} shape samples have no point cloud and the "
                         "project is read-only; run 'latentmap import' on a writable copy first")
    gen = points_steps(project, todo, n_points=project_n_points(project))
    for _ in gen:
        pass


def from_project(project, *, kind: str, ids: Sequence[str] | None = None, split: str | None = None,
                 dataset: str | None = None, array: str | None = None, labels: bool = True) -> SampleSet:
    """Build a ``SampleSet`` from a project.

    ``kind``: "image2d" / "volume" read the samples' own arrays (stacked; all samples of a set must
    share a shape, as the preprocessing step ensures); "points" reads the ``points`` array store
    entry (written by the mask -> mesh -> points pipeline). ``array`` overrides which array store
    entry to read (e.g. a residual volume set). Only labels that occur in the selected samples
    are kept, in label-set order.
    """
    df = project.samples(split=split, dataset=dataset)
    if ids is not None:
        want = set(ids)
        df = df[df["id"].isin(want)]
    if array is None and kind == "points":
        array = "points"
        _complete_points(project, df)
    if array is not None:
        stored_ids, data = project.arrays.load(array)
        pos = {s: i for i, s in enumerate(stored_ids)}
        df = df[df["id"].isin(pos)]
        x = data[[pos[s] for s in df["id"]]]
    else:
        if kind == "image2d":
            df = df[df["kind"] == "image2d"]
        elif kind == "volume":
            df = df[df["kind"].isin(["volume", "mask"])]
        x = project.load_stack(df["id"].tolist())
    sample_ids = df["id"].tolist()
    y, names = None, []
    if labels:
        names, y = project.labels_in_use(sample_ids)
        y = y if names else None
    return SampleSet(ids=np.array(sample_ids), x=x, y=y, label_names=names,
                     split=df["split"].to_numpy(), dev=df["dev"].to_numpy())
