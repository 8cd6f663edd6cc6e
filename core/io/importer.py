"""Import files, folders and manifests into a project, one reader per format.

``import_source(project, source)`` returns an :class:`ImportReport`; ``import_steps(...)`` is
the same work as a generator yielding ``core.jobs.Progress`` after every file so the app can
show progress and stop between files (closing the generator still records what was read).

Layout inside the project: ``data/<dataset>/<id>.npy`` for one-sample arrays,
``data/<dataset>/<split>_images.npy`` (and other stacks) with one row per sample, label maps
as ``<id>.mask.npy`` beside their volume, meshes in the array store as ``meshes/<id>``
(``data`` = vertices, ``faces`` = triangles). A sample whose id is already in the project is
left as it is (counted as "already imported"), so re-importing never duplicates samples and
never touches labels a user has edited; a sample whose files are missing (an import killed
before they were written) is imported again.

A full disk or a read-only project stops the import with ``DiskFullError``/``ReadOnlyError``
(naming the file): what was committed before stays, the failing step's files are removed.
Metadata is de-identified unless ``keep_identifiers`` (see ``deid``).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..jobs.progress import Progress, RateMeter
from ..project import Project, ProjectWriteError, SampleRecord, make_id
from ..project.store import DB_NAME
from . import labelmaps
from .deid import deidentify
from .dicom import is_dicom, read_dicom_series, series_in_folder
from .manifest import ManifestRow
from .registry import is_ignored, reader_for, reader_named
from .sample import LoadedSample, LoadedStack, ReadError

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ImportReport:
    imported: int = 0
    already: int = 0                                   # ids already in the project, left untouched
    skipped: list = field(default_factory=list)        # (path, reason)
    ignored: list = field(default_factory=list)        # non-data files (README, json, ...)
    by_kind: Counter = field(default_factory=Counter)
    by_dataset: Counter = field(default_factory=Counter)
    label_maps: int = 0                                # label maps attached to a volume
    ids: list = field(default_factory=list)            # ids of the samples imported now
    unpaired: list = field(default_factory=list)       # (label map, why it went to no volume)
    empty_masks: list = field(default_factory=list)    # ids of masks with no foreground voxel
    cancelled: bool = False
    error: str = ""                                    # why the import stopped (disk full, ...)

    def shape_ids(self, project: Project) -> list[str]:
        """Newly imported masks and meshes: what the point-cloud step has to process."""
        if not self.ids:
            return []
        shapes = {r[0] for r in project.query("SELECT id FROM samples WHERE kind IN ('mask', 'mesh')")}
        return [i for i in self.ids if i in shapes]

    def summary_lines(self) -> list[str]:
        lines = [f"imported {self.imported} samples"
                 + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(self.by_kind.items()))})"
                    if self.by_kind else "")]
        for name, n in sorted(self.by_dataset.items()):
            lines.append(f"  dataset {name}: {n}")
        if self.label_maps:
            lines.append(f"  {self.label_maps} label map(s) attached to their volumes")
        for path, why in self.unpaired:
            lines.append(f"  label map {path} attached to no volume: {why}; imported as its "
                         "own mask sample")
        if self.empty_masks:
            lines.append(f"  {len(self.empty_masks)} empty mask(s) imported; they get no points:")
            for sid in self.empty_masks[:20]:
                lines.append(f"    {sid}: empty mask, no surface to sample")
            if len(self.empty_masks) > 20:
                lines.append(f"    ... ({len(self.empty_masks) - 20} more)")
        if self.already:
            lines.append(f"already in the project (left unchanged): {self.already}")
        if self.error:
            lines.append(f"import stopped: {self.error}")
        elif self.cancelled:
            lines.append("import cancelled before the end")
        lines.append(f"skipped {len(self.skipped)} file(s)" + (":" if self.skipped else ""))
        for path, reason in self.skipped:
            lines.append(f"  {path}: {reason}")
        if self.ignored:
            exts = Counter(Path(p).suffix.lower() or Path(p).name for p in self.ignored)
            lines.append(f"ignored {len(self.ignored)} non-data file(s) ("
                         + ", ".join(f"{e} x{n}" for e, n in sorted(exts.items())) + ")")
        return lines


# ---------------------------------------------------------------------------------- planning
@dataclass
class _Unit:
    """One step of work: a file, a DICOM series, a label map, or a manifest row."""

    kind: str                      # file | series | labelmap | manifest_row
    path: Path
    dataset: str
    files: list = field(default_factory=list)   # series files
    uid: str = ""
    row: ManifestRow | None = None


#: manifest file names that say nothing about the cohort: such a table is named by its folder
GENERIC_MANIFEST_STEMS = {"manifest", "manifests", "index", "samples", "labels", "metadata", "files",
                          "list", "data", "dataset", "table"}


def default_dataset(path: Path) -> str:
    """Without --dataset: a .npz or manifest table names its dataset by its stem, unless the stem
    is a generic word (``study/manifest.csv`` is dataset ``study``, not ``manifest``); any other
    file by its folder (a DICOM series by the folder that holds it)."""
    path = Path(path)
    name = path.name
    if name.lower().endswith(".npz"):
        return name[: -len(".npz")]
    for ext in (".csv", ".tsv", ".parquet"):
        if name.lower().endswith(ext) and name[: -len(ext)].lower() not in GENERIC_MANIFEST_STEMS:
            return name[: -len(ext)]
    return path.name if path.is_dir() else _resolve(path).parent.name


def _resolve(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13)
        return Path(path).absolute()


def file_problem(path: Path) -> str | None:
    """Why a listed file cannot be read at all (a link loop, a dangling link), or None."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (following the link leads back to it): nothing to read"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"broken symbolic link (its target {os.readlink(path)!r} does not exist)"
        return f"cannot read ({exc.strerror or exc})"
    return None


def _plan_folder(folder: Path, dataset: str | None, report: ImportReport) -> list[_Unit]:
    units: list[_Unit] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        if (d / DB_NAME).exists():
            # A LatentMap project (maybe the one being imported into): its files are not data.
            report.ignored.append(str(d / DB_NAME))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
        units.extend(_plan_files(d, [d / f for f in sorted(filenames)], dataset, report))
    return units


def _plan_files(folder: Path, files: list[Path], dataset: str | None, report: ImportReport) -> list[_Unit]:
    """Units for files of one folder: DICOM grouped into series, label maps after volumes."""
    units, label_units, dicoms = [], [], []
    for f in files:
        problem = file_problem(f)
        if problem is not None:
            if not is_ignored(f):
                report.skipped.append((str(f), problem))
            continue
        ds = dataset or default_dataset(f)
        if is_ignored(f):
            report.ignored.append(str(f))
        elif is_dicom(f):
            dicoms.append(f)
        else:
            reader = reader_for(f)
            if reader is None:
                report.skipped.append((str(f), "unsupported file type"))
            elif reader.name == "manifest":
                # A table inside a scanned folder may or may not be a manifest; read manifests
                # only when named as a source, so a folder scan never imports files twice.
                report.ignored.append(str(f))
            elif reader.name == "volume" and labelmaps.is_label_map_name(f):
                label_units.append(_Unit("labelmap", f, ds))
            else:
                units.append(_Unit("file", f, ds))
    if dicoms:
        units = _plan_dicom(folder, dicoms, dataset) + units
    return units + label_units


def _plan_dicom(folder: Path, dicoms: list[Path], dataset: str | None) -> list[_Unit]:
    dataset = dataset or _resolve(folder).name
    wanted = {str(_resolve(p)) for p in dicoms}
    units, covered = [], set()
    try:
        series = series_in_folder(folder)
    except RuntimeError:
        series = []
    for uid, files in series:
        files = [f for f in files if str(_resolve(Path(f))) in wanted]
        if len(files) >= 2:
            units.append(_Unit("series", folder, dataset, files=files, uid=uid))
            covered.update(str(_resolve(Path(f))) for f in files)
    for p in dicoms:
        if str(_resolve(p)) not in covered:
            units.append(_Unit("file", p, dataset))
    return units


def plan(sources: Iterable, *, dataset: str | None, report: ImportReport) -> list[_Unit]:
    units: list[_Unit] = []
    by_folder: dict[Path, list[Path]] = {}
    for src in sources:
        src = Path(src).expanduser()
        name = dataset
        problem = file_problem(src) if os.path.islink(src) else None
        if problem is not None:
            report.skipped.append((str(src), problem))
        elif not src.exists():
            report.skipped.append((str(src), "not found"))
        elif src.is_dir():
            units.extend(_plan_folder(src, name, report))
        else:
            reader = reader_for(src)
            if reader is not None and reader.name == "manifest":
                units.extend(_plan_manifest(src, name or default_dataset(src), report))
            else:
                by_folder.setdefault((src.parent, name), []).append(src)
    for (folder, name), files in by_folder.items():
        units.extend(_plan_files(folder, files, name, report))
    return units


def _plan_manifest(path: Path, dataset: str, report: ImportReport) -> list[_Unit]:
    try:
        rows = reader_named("manifest").read(path)
    except ReadError as exc:
        report.skipped.append((exc.path, exc.reason))
        return []
    return [_Unit("manifest_row", r.path, dataset, row=r) for r in rows]


# ---------------------------------------------------------------------------------- importing
class _Writer:
    """Turns loaded samples into project files and records; holds a folder's volumes until its
    label maps are paired, then writes the records in one transaction."""

    def __init__(self, project: Project, report: ImportReport, *, modality: str | None,
                 keep_identifiers: bool = False):
        self.project = project
        self.report = report
        self.modality = modality
        self.keep_identifiers = keep_identifiers
        self.existing = complete_sample_ids(project)
        self.pending: list[SampleRecord] = []
        self.pending_folder: Path | None = None
        self.new_files: list[Path] = []     # files written for records not yet committed
        self.last_read = None               # (path, items) of the last manifest row's file

    def _meta(self, meta: dict) -> dict:
        return dict(meta) if self.keep_identifiers else deidentify(meta)

    def _save_array(self, rel: str, array) -> str:
        path = self.project.path / rel
        fresh = not path.exists()
        self.project.save_sample_array(rel, array)
        if fresh:
            self.new_files.append(path)
        return rel

    def _save_mesh(self, name: str, vertices, faces) -> None:
        fresh = not self.project.arrays.exists(name)
        target = self.project.arrays.save(name, vertices, faces=faces)
        if fresh:
            self.new_files.append(target)

    def discard_uncommitted(self, keep_pending: bool = True) -> None:
        """Remove the files written for records that will not be committed (a failed step)."""
        keep = set()
        if keep_pending:
            for r in self.pending:
                keep.update(self._files_of(r))
        still = []
        for f in self.new_files:
            if f in keep:
                still.append(f)
                continue
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                still.append(f)
        self.new_files = still

    def _files_of(self, r: SampleRecord) -> set:
        out = {self.project.path / f for f in (r.data_file, r.mask_file) if f}
        mesh = r.metadata.get("mesh_array") if isinstance(r.metadata, dict) else None
        if mesh:
            out.add(self.project.arrays.path(mesh))
        return out

    # -- one sample per file
    def add_sample(self, s: LoadedSample, dataset: str, *, extra_labels=(), split="", metadata=None,
                   mask_path: Path | None = None) -> None:
        sid = make_id(s.source_path, *s.key)
        if sid in self.existing:
            self.report.already += 1
            return
        folder = f"data/{_safe(dataset)}"
        meta = self._meta({**s.metadata, **(metadata or {})})
        rec = SampleRecord(
            id=sid, dataset=dataset, source_path=s.source_path, modality=self.modality or s.modality,
            kind=s.kind, split=split or s.split, geometry=s.geometry, metadata=meta,
            labels=list(dict.fromkeys([*s.labels, *extra_labels])))
        if s.kind == "mesh":
            name = f"meshes/{sid}"
            self._save_mesh(name, s.vertices, s.faces)
            rec.shape = list(s.vertices.shape)
            rec.metadata["mesh_array"] = name
        else:
            rec.shape = list(s.array.shape)
            rec.data_file = self._save_array(f"{folder}/{sid}.npy", s.array)
            if s.kind == "mask":
                rec.mask_file = rec.data_file
            if s.mask is not None:
                rec.mask_file = self._save_array(f"{folder}/{sid}.mask.npy", s.mask)
                self.report.label_maps += 1
        if mask_path is not None:
            self._attach_mask_file(rec, mask_path, folder)
        self.pending.append(rec)
        self.existing.add(sid)

    def _attach_mask_file(self, rec: SampleRecord, mask_path: Path, folder: str) -> None:
        mask = _read_single(mask_path, modality=None)
        if list(mask.array.shape) != list(rec.shape):
            raise ReadError(mask_path, f"mask shape {mask.array.shape} differs from its image "
                                       f"{tuple(rec.shape)} ({rec.source_path})")
        rec.mask_file = self._save_array(f"{folder}/{rec.id}.mask.npy", mask.array)
        tables = labelmaps.load_label_tables(mask_path.parent)
        rec.metadata.update(labelmaps.describe_label_map(mask.array, tables, path=mask_path,
                                                         modality=rec.modality))
        self.report.label_maps += 1

    # -- label map in a folder: attach to a pending volume on the same grid, else its own sample
    def add_label_map(self, s: LoadedSample, dataset: str) -> None:
        candidates = [(r.source_path, r.shape, r.geometry) for r in self.pending
                      if r.kind == "volume" and r.mask_file is None]
        idx, why = labelmaps.pair_label_map(s.source_path, s.array.shape, s.geometry, candidates)
        tables = labelmaps.load_label_tables(Path(s.source_path).parent)
        if idx is None:
            self.report.unpaired.append((s.source_path, why))
            s.kind = "mask"
            s.metadata.update(labelmaps.describe_label_map(s.array, tables, path=s.source_path,
                                                           modality=s.modality))
            self.add_sample(s, dataset)
            return
        volume = [r for r in self.pending if r.kind == "volume" and r.mask_file is None][idx]
        folder = f"data/{_safe(dataset)}"
        volume.mask_file = self._save_array(f"{folder}/{volume.id}.mask.npy", s.array)
        volume.metadata.update(labelmaps.describe_label_map(
            s.array, tables, path=s.source_path, modality=volume.modality))
        self.report.label_maps += 1

    # -- many samples in one stacked array
    def add_stack(self, st: LoadedStack, dataset: str, *, extra_labels=(), split="", metadata=None) -> None:
        # Ids are prefixed by the stack's own name (the .npz stem, or --dataset), so two .npz
        # files named in one manifest cannot collide; the dataset column may group them.
        prefix = st.dataset or dataset
        dataset = dataset or st.dataset
        if st.stable_ids:
            ids = ["/".join([_safe(prefix), *map(str, k)]) for k in st.keys]
        else:
            ids = [make_id(st.source_path, *k) for k in st.keys]
        new = [i for i, sid in enumerate(ids) if sid not in self.existing]
        self.report.already += len(ids) - len(new)
        if not new:
            return
        stem = st.store_name or (ids[0].split("/")[0] + "_stack")
        rel = self._save_array(f"data/{_safe(prefix)}/{_safe(stem)}.npy", st.array)
        records = []
        row_shape = list(st.array.shape[1:])
        for i in new:
            meta = dict(st.metadata)
            if st.row_metadata:
                meta.update(st.row_metadata[i])
            if metadata:
                meta.update(metadata)
            meta = self._meta(meta)
            labels = list(st.labels[i]) if st.labels is not None else []
            if meta.get("empty_mask"):
                self.report.empty_masks.append(ids[i])
            records.append(SampleRecord(
                id=ids[i], dataset=dataset, source_path=st.source_path,
                modality=self.modality or st.modality, kind=st.kind, split=split or st.split_of(i),
                shape=row_shape, geometry=st.geometry, metadata=meta, data_file=rel, data_index=i,
                mask_file=rel if st.kind == "mask" else None,
                mask_index=i if st.kind == "mask" else None,
                labels=list(dict.fromkeys([*labels, *extra_labels]))))
        self._commit(records)

    def flush(self) -> None:
        if self.pending:
            records, self.pending = self.pending, []
            self._commit(records)

    def _commit(self, records: list[SampleRecord]) -> None:
        self.project.add_samples(records)
        done = set()
        for r in records:
            done.update(self._files_of(r))
        self.new_files = [f for f in self.new_files if f not in done]
        for r in records:
            self.existing.add(r.id)
            self.report.ids.append(r.id)
            self.report.by_kind[r.kind] += 1
            self.report.by_dataset[r.dataset] += 1
        self.report.imported += len(records)


def _safe(name: str) -> str:
    return _SAFE.sub("_", str(name)) or "dataset"


def complete_sample_ids(project: Project) -> set[str]:
    """Ids of samples whose files are all there. A sample recorded by an import that was killed
    before its files were complete is left out, so the next import writes it again."""
    exists: dict[str, bool] = {}

    def ok(rel) -> bool:
        if rel is None:
            return True
        if rel not in exists:
            exists[rel] = (project.path / rel).exists()
        return exists[rel]

    out = set()
    for sid, kind, data_file, mask_file, mesh in project.query(
            "SELECT id, kind, data_file, mask_file, json_extract(metadata, '$.mesh_array') FROM samples"):
        if not (ok(data_file) and ok(mask_file)):
            continue
        if kind == "mesh" and mesh and not project.arrays.exists(mesh):
            continue
        out.add(sid)
    return out


def _read(path: Path, *, modality: str | None, dataset: str | None = None):
    reader = reader_for(path)
    if reader is None or reader.name == "manifest":
        raise ReadError(path, "unsupported file type")
    return reader.read(path, modality=modality, dataset=dataset)


def _read_single(path: Path, *, modality: str | None) -> LoadedSample:
    items = _read(path, modality=modality)
    if len(items) != 1 or not isinstance(items[0], LoadedSample):
        raise ReadError(path, "expected a single image")
    return items[0]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ReadError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def import_steps(project: Project, sources, *, dataset: str | None = None,
                 modality: str | None = None, report: ImportReport | None = None,
                 keep_identifiers: bool = False) -> Iterator[Progress]:
    """Import ``sources`` (files, folders, manifests); yields one Progress per file or series.

    The report is filled in place (pass your own to read it while iterating) and is also the
    generator's return value. A bad file is reported and skipped; a full disk or a read-only
    project stops the import (``ProjectWriteError``, also in ``report.error``) after removing
    the files of the step that failed.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    report = report if report is not None else ImportReport()
    units = plan(sources, dataset=dataset, report=report)
    writer = _Writer(project, report, modality=modality, keep_identifiers=keep_identifiers)
    meter = RateMeter(len(units))
    finished = False
    try:
        for step, unit in enumerate(units, start=1):
            folder = unit.path.parent if unit.kind != "series" else unit.path
            if unit.kind != "labelmap" and folder != writer.pending_folder:
                writer.flush()
            writer.pending_folder = folder
            n_before = report.imported + len(writer.pending)
            try:
                _do_unit(writer, unit, modality=modality)
            except ProjectWriteError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad file never stops an import
                writer.discard_uncommitted()
                where = getattr(exc, "path", None) or str(unit.path)
                if unit.kind == "manifest_row" and unit.row is not None:
                    where = f"{unit.path} (manifest {unit.row.metadata.get('manifest')}, row {unit.row.row})"
                report.skipped.append((where, _reason(exc)))
            rate, eta = meter.update(max(0, report.imported + len(writer.pending) - n_before) or 1)
            yield Progress(epoch=0, step=step, global_step=step, n_epochs=1,
                           steps_per_epoch=len(units), samples_per_s=rate, eta_s=eta,
                           epoch_end=step == len(units), message=str(unit.path))
        finished = True
    except ProjectWriteError as exc:
        report.error = str(exc)
        writer.discard_uncommitted()   # keep only the pending samples whose files are whole
        try:
            writer.flush()
        except ProjectWriteError:
            pass
        writer.discard_uncommitted(keep_pending=False)
        raise
    finally:
        if not report.error:
            try:
                writer.flush()
            except ProjectWriteError as exc:
                report.error = str(exc)
                writer.discard_uncommitted(keep_pending=False)
                raise
        report.cancelled = not finished
    return report


def _do_unit(writer: _Writer, unit: _Unit, *, modality: str | None) -> None:
    if unit.kind == "series":
        for s in read_dicom_series(unit.path, unit.uid, unit.files, modality=modality):
            writer.add_sample(s, unit.dataset)
    elif unit.kind == "labelmap":
        writer.add_label_map(_read_single(unit.path, modality=modality), unit.dataset)
    elif unit.kind == "manifest_row":
        row = unit.row
        if not row.path.exists():
            raise ReadError(row.path, "file not found")
        mask_path = row.mask
        if row.path.is_dir():
            items = []
            for uid, files in series_in_folder(row.path):
                items.extend(read_dicom_series(row.path, uid, files, modality=modality)
                             if len(files) > 1 else _read(Path(files[0]), modality=modality))
            if not items:
                raise ReadError(row.path, "folder holds no DICOM series")
        elif writer.last_read is not None and writer.last_read[0] == row.path:
            items = writer.last_read[1]      # rows of one many-sample file: read it once
        else:
            items = _read(row.path, modality=modality, dataset=None)
            writer.last_read = (row.path, items) if row.key else None
        if row.key:
            items = _only_key(items, row.key, row.path)
        for it in items:
            if isinstance(it, LoadedStack):
                writer.add_stack(it, unit.dataset, extra_labels=row.labels, split=row.split,
                                 metadata=row.metadata)
            else:
                writer.add_sample(it, unit.dataset, extra_labels=row.labels, split=row.split,
                                  metadata=row.metadata,
                                  mask_path=mask_path)
    else:
        reader = reader_for(unit.path)
        items = _read(unit.path, modality=modality,
                      dataset=unit.dataset if reader and reader.name == "medmnist" else None)
        for it in items:
            if isinstance(it, LoadedStack):
                writer.add_stack(it, unit.dataset)
            else:
                writer.add_sample(it, unit.dataset)


def _only_key(items, key: str, path) -> list:
    """The one sample of ``items`` whose id ends in ``key`` (a manifest's ``sample_key``: a row
    of a stacked file such as ``train/00042``, a frame ``t0003``, a series token)."""
    from dataclasses import replace

    out = []
    for it in items:
        if isinstance(it, LoadedStack):
            rows = [i for i, k in enumerate(it.keys) if "/".join(map(str, k)) == key]
            if rows:
                out.append(replace(
                    it, array=it.array[rows], keys=[it.keys[i] for i in rows],
                    row_metadata=None if it.row_metadata is None else [it.row_metadata[i] for i in rows],
                    splits=it.splits if isinstance(it.splits, str) else [it.splits[i] for i in rows],
                    labels=None if it.labels is None else [it.labels[i] for i in rows],
                    store_name=f"{it.store_name or 'rows'}-{_safe(key)}"))
        elif "/".join(map(str, it.key)) == key:
            out.append(it)
    if not out:
        raise ReadError(path, f"no sample {key!r} in this file (sample_key column)")
    return out


def import_source(project: Project, source, *, dataset: str | None = None, modality: str | None = None,
                  progress=None, keep_identifiers: bool = False) -> ImportReport:
    """Import one source (or a list of them); ``progress`` is called with each Progress."""
    report = ImportReport()
    for p in import_steps(project, source, dataset=dataset, modality=modality, report=report,
                          keep_identifiers=keep_identifiers):
        if progress is not None:
            progress(p)
    return report
