"""Import files, folders and manifests into a project, one reader per format.

``import_source(project, source)`` returns an :class:`ImportReport`; ``import_steps(...)`` is
the same work as a generator yielding ``core.jobs.Progress`` after every file so the app can
show progress and stop between files (closing the generator still records what was read).

Layout inside the project: ``data/<dataset>/<id>.npy`` for one-sample arrays,
``data/<dataset>/<split>_images.npy`` (and other stacks) with one row per sample, label maps
as ``<id>.mask.npy`` beside their volume, meshes in the array store as ``meshes/<id>``
(``data`` = vertices, ``faces`` = triangles). A sample whose id is already in the project is
left as it is (counted as "already imported"), so re-importing never duplicates samples and
never touches labels a user has edited.
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
from ..project import Project, SampleRecord, make_id
from ..project.store import DB_NAME
from . import labelmaps
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
    cancelled: bool = False

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
        if self.already:
            lines.append(f"already in the project (left unchanged): {self.already}")
        if self.cancelled:
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


def default_dataset(path: Path) -> str:
    """Without --dataset: a .npz or manifest names its dataset by its stem, any other file by
    its folder (a DICOM series by the folder that holds it)."""
    path = Path(path)
    name = path.name
    for ext in (".npz", ".csv", ".tsv", ".parquet"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.name if path.is_dir() else path.resolve().parent.name


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
    dataset = dataset or folder.resolve().name
    wanted = {str(p.resolve()) for p in dicoms}
    units, covered = [], set()
    try:
        series = series_in_folder(folder)
    except RuntimeError:
        series = []
    for uid, files in series:
        files = [f for f in files if str(Path(f).resolve()) in wanted]
        if len(files) >= 2:
            units.append(_Unit("series", folder, dataset, files=files, uid=uid))
            covered.update(str(Path(f).resolve()) for f in files)
    for p in dicoms:
        if str(p.resolve()) not in covered:
            units.append(_Unit("file", p, dataset))
    return units


def plan(sources: Iterable, *, dataset: str | None, report: ImportReport) -> list[_Unit]:
    units: list[_Unit] = []
    by_folder: dict[Path, list[Path]] = {}
    for src in sources:
        src = Path(src).expanduser()
        name = dataset
        if not src.exists():
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

    def __init__(self, project: Project, report: ImportReport, *, modality: str | None):
        self.project = project
        self.report = report
        self.modality = modality
        self.existing = {r[0] for r in project.query("SELECT id FROM samples")}
        self.pending: list[SampleRecord] = []
        self.pending_folder: Path | None = None

    # -- one sample per file
    def add_sample(self, s: LoadedSample, dataset: str, *, extra_labels=(), split="", metadata=None,
                   mask_path: Path | None = None) -> None:
        sid = make_id(s.source_path, *s.key)
        if sid in self.existing:
            self.report.already += 1
            return
        folder = f"data/{_safe(dataset)}"
        meta = {**s.metadata, **(metadata or {})}
        rec = SampleRecord(
            id=sid, dataset=dataset, source_path=s.source_path, modality=self.modality or s.modality,
            kind=s.kind, split=split or s.split, geometry=s.geometry, metadata=meta,
            labels=list(dict.fromkeys([*s.labels, *extra_labels])))
        if s.kind == "mesh":
            name = f"meshes/{sid}"
            self.project.arrays.save(name, s.vertices, faces=s.faces)
            rec.shape = list(s.vertices.shape)
            rec.metadata["mesh_array"] = name
        else:
            rec.shape = list(s.array.shape)
            rec.data_file = self.project.save_sample_array(f"{folder}/{sid}.npy", s.array)
            if s.kind == "mask":
                rec.mask_file = rec.data_file
            if s.mask is not None:
                rec.mask_file = self.project.save_sample_array(f"{folder}/{sid}.mask.npy", s.mask)
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
        rec.mask_file = self.project.save_sample_array(f"{folder}/{rec.id}.mask.npy", mask.array)
        tables = labelmaps.load_label_tables(mask_path.parent)
        rec.metadata.update(labelmaps.describe_label_map(mask.array, tables, path=mask_path,
                                                         modality=rec.modality))
        self.report.label_maps += 1

    # -- label map in a folder: attach to a pending volume on the same grid, else its own sample
    def add_label_map(self, s: LoadedSample, dataset: str) -> None:
        candidates = [(r.source_path, r.shape, r.geometry) for r in self.pending
                      if r.kind == "volume" and r.mask_file is None]
        idx = labelmaps.pick_volume(s.source_path, s.array.shape, s.geometry, candidates)
        tables = labelmaps.load_label_tables(Path(s.source_path).parent)
        if idx is None:
            s.kind = "mask"
            s.metadata.update(labelmaps.describe_label_map(s.array, tables, path=s.source_path,
                                                           modality=s.modality))
            self.add_sample(s, dataset)
            return
        volume = [r for r in self.pending if r.kind == "volume" and r.mask_file is None][idx]
        folder = f"data/{_safe(dataset)}"
        volume.mask_file = self.project.save_sample_array(f"{folder}/{volume.id}.mask.npy", s.array)
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
        rel = self.project.save_sample_array(f"data/{_safe(prefix)}/{_safe(stem)}.npy", st.array)
        records = []
        row_shape = list(st.array.shape[1:])
        for i in new:
            meta = dict(st.metadata)
            if st.row_metadata:
                meta.update(st.row_metadata[i])
            if metadata:
                meta.update(metadata)
            labels = list(st.labels[i]) if st.labels is not None else []
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
        for r in records:
            self.existing.add(r.id)
            self.report.ids.append(r.id)
            self.report.by_kind[r.kind] += 1
            self.report.by_dataset[r.dataset] += 1
        self.report.imported += len(records)


def _safe(name: str) -> str:
    return _SAFE.sub("_", str(name)) or "dataset"


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
                 modality: str | None = None, report: ImportReport | None = None) -> Iterator[Progress]:
    """Import ``sources`` (files, folders, manifests); yields one Progress per file or series.

    The report is filled in place (pass your own to read it while iterating) and is also the
    generator's return value.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    report = report if report is not None else ImportReport()
    units = plan(sources, dataset=dataset, report=report)
    writer = _Writer(project, report, modality=modality)
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
            except Exception as exc:  # noqa: BLE001 - one bad file never stops an import
                where = getattr(exc, "path", None) or str(unit.path)
                if unit.kind == "manifest_row" and unit.row is not None:
                    where = f"{unit.path} (manifest {unit.row.metadata.get('manifest')}, row {unit.row.row})"
                report.skipped.append((where, _reason(exc)))
            rate, eta = meter.update(max(0, report.imported + len(writer.pending) - n_before) or 1)
            yield Progress(epoch=0, step=step, global_step=step, n_epochs=1,
                           steps_per_epoch=len(units), samples_per_s=rate, eta_s=eta,
                           epoch_end=step == len(units), message=str(unit.path))
        finished = True
    finally:
        writer.flush()
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
        else:
            items = _read(row.path, modality=modality, dataset=None)
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


def import_source(project: Project, source, *, dataset: str | None = None, modality: str | None = None,
                  progress=None) -> ImportReport:
    """Import one source (or a list of them); ``progress`` is called with each Progress."""
    report = ImportReport()
    for p in import_steps(project, source, dataset=dataset, modality=modality, report=report):
        if progress is not None:
            progress(p)
    return report
