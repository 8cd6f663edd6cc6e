"""The open project as the views see it: cached tables, the active run, and change signals.

Every edit goes through here to the project database (one transaction each) and is then
announced, so views never talk to each other and never hold the only copy of anything.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
from psygnal import Signal

from core.project import Project

#: columns every project can be coloured by, before metadata columns
BASE_COLUMNS = ("cluster", "label", "predicted", "split", "dataset", "modality", "kind", "dev")
#: previews kept in memory per project (64 px: 4 KiB each)
THUMBNAIL_CACHE = 1024


class ProjectModel:
    samples_changed = Signal()
    labels_changed = Signal(object)        # ids whose labels changed (tuple) or None for "many"
    label_set_changed = Signal()
    dev_changed = Signal(object)
    clustering_changed = Signal(str)
    run_changed = Signal(object)           # active run id or None
    projection_changed = Signal(str)       # "pca" | "umap"
    history_changed = Signal()
    samples_placed = Signal(object)        # list of core.workflows.place.Placement (new cases placed)

    def __init__(self, project: Project, *, author: str | None = None):
        self.project = project
        self.author = author
        self._samples: pd.DataFrame | None = None
        self._labels: dict[str, list[str]] | None = None
        run = project.meta("active_run")
        self._active_run: int | None = int(run) if run else None
        self._active_clustering: str | None = project.meta("active_clustering")
        self._placer = None
        self._thumbs: OrderedDict = OrderedDict()  # (id, size) -> uint8 preview, newest last
        #: ids placed in this session (new cases), newest last: the views highlight them
        self.placed_ids: list[str] = []
        self.placements: dict = {}

    @classmethod
    def open(cls, path, **kw) -> "ProjectModel":
        return cls(Project.open(Path(path)), **kw)

    def close(self) -> None:
        self.project.close()

    # ------------------------------------------------------------------ samples
    @property
    def samples(self) -> pd.DataFrame:
        if self._samples is None:
            self._samples = self.project.samples().set_index("id", drop=False)
        return self._samples

    def refresh(self) -> None:
        self._samples = None
        self._labels = None
        self.samples_changed.emit()

    def poll_external_changes(self) -> bool:
        """Reload what another session (another annotator) changed since the last poll; the
        app's timer calls this every few seconds. True when something changed."""
        from core.project.changes import change_token

        token = change_token(self.project)
        last, self._change_token = getattr(self, "_change_token", None), token
        if last is None or token == last:
            return False
        if token[3:] != last[3:]:
            self.label_set_changed.emit()
        self._samples = None                 # development-set flags live on the samples
        self._labels = None
        self.labels_changed.emit(None)
        self.history_changed.emit()
        return True

    def labels(self) -> dict[str, list[str]]:
        if self._labels is None:
            self._labels = self.project.labels(self.samples.index.tolist())
        return self._labels

    def label_names(self) -> list[str]:
        return self.project.label_names()

    # ------------------------------------------------------------------ active run
    @property
    def active_run(self) -> int | None:
        return self._active_run

    @active_run.setter
    def active_run(self, run_id: int | None) -> None:
        self._active_run = run_id
        self.project.set_meta("active_run", "" if run_id is None else str(run_id))
        self.run_changed.emit(run_id)

    @property
    def active_clustering(self) -> str | None:
        return self._active_clustering or None

    @active_clustering.setter
    def active_clustering(self, name: str | None) -> None:
        self._active_clustering = name
        self.project.set_meta("active_clustering", name or "")
        self.clustering_changed.emit(name or "")

    def run_name(self) -> str | None:
        from core.project.accessors import run_name

        return None if self._active_run is None else run_name(self._active_run)

    def embedding(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, features) of the active run, or None before any run was applied."""
        if self._active_run is None or not self.project.has_embedding(self._active_run):
            return None
        return self.project.embedding(self._active_run)

    def projection(self, kind: str = "pca") -> tuple[np.ndarray, np.ndarray] | None:
        if self._active_run is None:
            return None
        return self.project.projection(self._active_run, kind)

    def save_projection(self, kind: str, ids, xy) -> None:
        self.project.save_projection(self._active_run, kind, ids, xy)
        self.projection_changed.emit(kind)

    # ------------------------------------------------------------------ workflows
    def umap_steps(self):
        """Step generator computing and storing the active run's UMAP (run it as a job, then
        :meth:`projection_stored`)."""
        from core.workflows.projections import umap_steps

        return umap_steps(self.project, self._active_run)

    def projection_stored(self, kind: str) -> None:
        self.projection_changed.emit(kind)

    def map_clusters(self):
        """Algorithm 1 on the active clustering (project dev set); announces the change."""
        from core.workflows.mapping import algorithm1

        result = algorithm1(self.project, self.active_clustering)
        self.clustering_changed.emit(self.active_clustering)
        return result

    def clustering_added(self, name: str) -> None:
        """A new clustering was stored (undoable): make it active and announce it."""
        self._active_clustering = name
        self.project.set_meta("active_clustering", name)
        self.clustering_changed.emit(name)
        self.history_changed.emit()

    def placer(self):
        """The active run loaded for placing new samples (kept between imports: warm)."""
        from core.workflows.place import Placer

        key = (self._active_run, self.active_clustering)
        if self._placer is None or self._placer_key != key:
            self._placer = Placer(self.project, self._active_run, clustering=self.active_clustering)
            self._placer_key = key
        self._placer.refresh_predictions()
        return self._placer

    def can_place(self) -> bool:
        """Whether new samples can be placed: the active run has an embedding and a trained
        method with a checkpoint to embed them."""
        if self._active_run is None or not self.project.has_embedding(self._active_run):
            return False
        try:
            from core.workflows.runs import method_class

            run = self.project.run(self._active_run)
            method_class(run["method"])
            return bool(run.get("checkpoint"))
        except Exception:  # noqa: BLE001 - an unknown or unrecorded run: import without placing
            return False

    def import_and_place_steps(self, paths, *, structures=(), dataset: str | None = None, k: int = 8):
        """Step generator: import ``paths``, derive what the active run reads, place the new
        samples (when there is an embedded run); returns ``(DeriveReport, placements)``. Run it
        as a job, then call :meth:`placed` on the GUI thread."""
        from core.workflows.derive import import_and_derive_steps
        from core.workflows.tasks import single_step

        placer = self.placer() if self.can_place() else None
        points = placer is None or placer.input_kind in ("points", "")
        report = yield from import_and_derive_steps(self.project, [str(p) for p in paths], dataset=dataset,
                                                    structures=structures, points=points)
        placements = []
        if placer is not None and report.sample_ids:
            failed = {str(s) for s, _ in report.points_failed}
            ids = [s for s in report.sample_ids if s not in failed]
            if points:  # a shape run reads masks, meshes and structures; other new samples are only imported
                kinds = dict(self.project.query(
                    f"SELECT id, kind FROM samples WHERE id IN ({','.join('?' * len(ids))})", ids)) if ids else {}
                ids = [s for s in ids if kinds.get(s) in ("mask", "mesh", "structure")]
            if ids:
                placements = yield from single_step(lambda: placer.place(ids, k=k),
                                                    f"placing {len(ids)} new case(s)")
        return report, placements

    def placed(self, placements) -> None:
        """New samples were imported and placed: re-read the tables and announce every change
        (samples, the run's embedding and projections, its clustering), then ``samples_placed``."""
        self.refresh()
        self._labels = None
        for p in placements:
            self.placements[p.id] = p
            if p.id not in self.placed_ids:
                self.placed_ids.append(p.id)
        if placements:
            self.projection_changed.emit("pca")
            self.projection_changed.emit("umap")
            if self.active_clustering:
                self.clustering_changed.emit(self.active_clustering)
            self.run_changed.emit(self._active_run)
        self.samples_placed.emit(list(placements))

    def clustering(self) -> pd.Series | None:
        """Cluster per sample id of the active clustering."""
        if not self.active_clustering:
            return None
        ids, assign = self.project.load_clustering(self.active_clustering)
        return pd.Series(assign, index=ids, name="cluster")

    # ------------------------------------------------------------------ colouring
    def columns(self) -> list[str]:
        meta_cols = set()
        for m in self.samples["metadata"].head(200):
            meta_cols.update(k for k, v in m.items() if isinstance(v, (str, int, float, bool)))
        return list(BASE_COLUMNS) + sorted(f"meta:{c}" for c in meta_cols)

    def column_values(self, column: str, ids) -> tuple[np.ndarray, bool]:
        """Values of ``column`` for ``ids`` and whether the column is categorical.

        ``label`` is the first label of each sample ('' when unlabelled); ``predicted`` is the
        Algorithm-1 label of the sample's cluster (manual overrides win).
        """
        ids = list(ids)
        df = self.samples
        if column == "cluster":
            cl = self.clustering()
            if cl is None:
                return np.array([""] * len(ids), dtype=object), True
            return cl.reindex(ids).fillna(-1).astype(int).astype(str).to_numpy(dtype=object), True
        if column == "label":
            lab = self.labels()
            return np.array([", ".join(lab.get(i, [])) for i in ids], dtype=object), True
        if column == "predicted":
            pred = self.predicted_labels()
            return np.array([pred.get(i, "") for i in ids], dtype=object), True
        if column in ("split", "dataset", "modality", "kind"):
            return df.loc[ids, column].to_numpy(dtype=object), True
        if column == "dev":
            return np.where(df.loc[ids, "dev"].to_numpy(), "development", "other").astype(object), True
        if column.startswith("meta:"):
            key = column[5:]
            vals = [df.at[i, "metadata"].get(key) for i in ids]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None)
            if numeric and len({v for v in vals}) > 12:
                return np.array([np.nan if v is None else float(v) for v in vals]), False
            return np.array(["" if v is None else str(v) for v in vals], dtype=object), True
        if column.startswith("score:"):
            _, data = self.project.arrays.load(column[6:])
            return np.asarray(data, dtype=float), False
        raise KeyError(f"unknown colour column {column!r}")

    def predicted_labels(self) -> dict[str, str]:
        """sample id -> predicted label names of its cluster (override, else Algorithm 1 >= 0.5)."""
        from core.workflows.mapping import sample_predictions

        if not self.active_clustering:
            return {}
        return {s: p.text for s, p in sample_predictions(self.project, self.active_clustering).items()}

    # ------------------------------------------------------------------ edits
    def set_label(self, ids, label: str, value: bool = True) -> int:
        n = self.project.set_label(list(ids), label, value, author=self.author)
        self._after_label_edit(ids)
        return n

    def replace_label(self, ids, label: str) -> int:
        """``label`` becomes the only label of each of ``ids`` (single-label relabelling)."""
        n = self.project.replace_label(list(ids), label, author=self.author)
        self._after_label_edit(ids)
        return n

    def toggle_label(self, ids, label: str) -> int:
        n = self.project.toggle_label(list(ids), label, author=self.author)
        self._after_label_edit(ids)
        return n

    def _after_label_edit(self, ids) -> None:
        self._labels = None
        self.labels_changed.emit(tuple(ids))
        self.history_changed.emit()

    def set_dev(self, ids, value: bool = True) -> int:
        n = self.project.set_dev(list(ids), value, author=self.author)
        self._samples = None
        self.dev_changed.emit(tuple(ids))
        self.history_changed.emit()
        return n

    def set_cluster_label(self, cluster: int, vector: dict | None) -> None:
        self.project.set_cluster_label(self.active_clustering, cluster, vector, author=self.author)
        self.clustering_changed.emit(self.active_clustering)
        self.history_changed.emit()

    def undo(self) -> dict | None:
        return self._after_history(self.project.undo(author=self.author))

    def redo(self) -> dict | None:
        return self._after_history(self.project.redo(author=self.author))

    def _after_history(self, entry):
        if entry is None:
            return None
        kind = entry["kind"]
        if kind in ("label", "relabel"):
            self._labels = None
            self.labels_changed.emit(tuple(c[0] for c in entry["changes"]))
        elif kind == "dev":
            self._samples = None
            self.dev_changed.emit(tuple(c[0] for c in entry["changes"]))
        elif kind == "cluster_label":
            self.clustering_changed.emit(entry["clustering"])
        elif kind == "clustering":
            self._active_clustering = self.project.meta("active_clustering") or None
            self.clustering_changed.emit(self._active_clustering or "")
        self.history_changed.emit()
        return entry

    def add_label(self, name: str, color: str | None = None) -> None:
        self.project.add_label(name, color)
        self.label_set_changed.emit()

    def rename_label(self, old: str, new: str) -> None:
        self.project.rename_label(old, new)
        self._labels = None
        self.label_set_changed.emit()
        self.labels_changed.emit(None)

    def set_label_color(self, name: str, color: str) -> None:
        self.project.set_label_color(name, color)
        self.label_set_changed.emit()

    def label_colors(self) -> dict[str, str | None]:
        return self.project.label_colors()

    def can_undo(self) -> bool:
        return self.project.can_undo()

    def can_redo(self) -> bool:
        return self.project.can_redo()

    def remove_label(self, name: str) -> None:
        self.project.remove_label(name)
        self._labels = None
        self.label_set_changed.emit()
        self.labels_changed.emit(None)

    # ------------------------------------------------------------------ images
    def thumbnail(self, sample_id: str, size: int = 64) -> np.ndarray:
        """uint8 2D thumbnail: the image itself, a volume's middle axial slice, a mask's projection,
        a structure's largest axial cross-section cropped around it."""
        from core.orientation import apply_transform, radiological_transform
        from core.thumbnails import make_thumbnail

        key = (sample_id, int(size))
        if key in self._thumbs:  # a sample's arrays never change: the strip and the panels reuse it
            self._thumbs.move_to_end(key)
            return self._thumbs[key]
        arr = np.asarray(self.project.load_sample_array(sample_id))  # memory-mapped: read lazily
        kind = self.samples.at[sample_id, "kind"]
        mask = self.structure_mask(sample_id) if kind == "structure" else None
        if kind in ("volume", "structure"):  # as the image view shows it: patient's right on the left
            tf = radiological_transform(self.samples.at[sample_id, "geometry"], arr.ndim)
            arr = apply_transform(arr, tf, copy=False)
            mask = apply_transform(mask, tf, copy=False) if mask is not None else None
        thumb = make_thumbnail(arr, size=size, kind=kind, mask=mask)
        self._thumbs[key] = thumb
        while len(self._thumbs) > THUMBNAIL_CACHE:
            self._thumbs.popitem(last=False)
        return thumb

    def _structure_meta(self, sample_id: str) -> dict:
        """A structure sample's metadata (``structure``, ``label_value``); {} for other samples."""
        if sample_id not in self.samples.index or self.samples.at[sample_id, "kind"] != "structure":
            return {}
        meta = self.samples.at[sample_id, "metadata"]
        return meta if isinstance(meta, dict) else {}

    def structure_name(self, sample_id: str) -> str | None:
        """The organ a structure sample stands for (``liver``), None for any other sample."""
        return self._structure_meta(sample_id).get("structure") or None

    def structure_mask(self, sample_id: str) -> np.ndarray | None:
        """A structure sample's voxels in its scan's label map (None when it cannot be read)."""
        value = self._structure_meta(sample_id).get("label_value")
        if value is None:
            return None
        try:
            return np.asarray(self.project.load_sample_array(sample_id, mask=True)) == int(value)
        except (KeyError, OSError, ValueError):
            return None
