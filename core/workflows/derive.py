"""Import and derive: files into a project, then what the methods read from them (meshes and
1024-point clouds of masks, meshes and chosen label-map structures), including recomputing
derived data that is missing (e.g. after an import with ``--no-points``).

Structures: a scan with a multi-label map (a CT with TotalSegmentator's labels, a label map
alone) can give one sample per chosen structure, ``<scan id>/<structure name>``, kind
``structure``: the scan's image and label map, the structure's label value in its metadata
(``scan``, ``structure``, ``label_value``), so the image view shows the scan and the mesh and
points are that structure's alone. Names come from the label map's own table (a JSON beside
it, as TotalSegmentator's ``labels.json``); a structure may be given by name or value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..jobs.steps import run_to_end
from ..project import SampleRecord

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
DEFAULT_N_POINTS = 1024


@dataclass
class DeriveReport:
    """What import-and-derive did: the importer's report, the structure samples made, and the
    point-cloud step's failures."""

    import_report: object = None
    structure_ids: list = field(default_factory=list)
    structure_errors: list = field(default_factory=list)      # (scan id, reason)
    points_ids: list = field(default_factory=list)
    points_failed: list = field(default_factory=list)         # (id, reason)
    sample_ids: list = field(default_factory=list)            # the samples the sources stand for
    n_points: int = DEFAULT_N_POINTS

    def lines(self) -> list[str]:
        out = list(self.import_report.summary_lines()) if self.import_report is not None else []
        if self.structure_ids:
            out.append(f"structures: {len(self.structure_ids)} sample(s): " + ", ".join(self.structure_ids[:10]))
        for sid, why in self.structure_errors:
            out.append(f"  {sid}: {why}")
        if self.points_ids or self.points_failed:
            out.append(f"points: {len(self.points_ids) - len(self.points_failed)} of {len(self.points_ids)} "
                       f"shapes sampled with {self.n_points} points")
        for sid, why in self.points_failed:
            out.append(f"  {sid}: {why}")
        return out


# ---------------------------------------------------------------------------- structures
def label_names_of(sample: dict) -> dict[int, str]:
    """{label value: name} of a sample's label map, from its import metadata."""
    names = (sample.get("metadata") or {}).get("mask_label_names") or {}
    return {int(k): str(v) for k, v in names.items()}


def resolve_structure(sample: dict, structure) -> tuple[int, str]:
    """``(label value, name)`` of ``structure`` (a name, case-insensitive, or a label value) in
    the sample's label map; ValueError listing what the map holds when it is not there."""
    names = label_names_of(sample)
    text = str(structure).strip()
    if text.lstrip("-").isdigit():
        v = int(text)
        if v in names:
            return v, names[v]
        if not names:
            return v, f"label_{v}"
    else:
        for v, n in names.items():
            if n.lower() == text.lower():
                return v, n
    present = ", ".join(f"{n} ({v})" for v, n in sorted(names.items())[:60]) or "no labels"
    raise ValueError(f"{sample['id']}: the label map has no structure {text!r}; it holds: {present}")


def structure_id(scan_id: str, name: str) -> str:
    return f"{scan_id}/{_SAFE.sub('_', name)}"


def add_structures(project, scan_ids, structures) -> tuple[list[str], list[tuple[str, str]]]:
    """One ``structure`` sample per (scan with a label map, structure); existing ones are kept.
    Returns (structure sample ids, (scan id, reason) for scans that cannot give them)."""
    made, errors, records = [], [], []
    if not structures or not scan_ids:
        return made, errors
    for row in project.sample_rows(list(scan_ids)):
        if row["kind"] == "structure":
            continue
        if row.get("mask_file") is None:
            errors.append((row["id"], "has no label map to take a structure from: import the scan "
                                      "together with its label map (a file whose name says seg, "
                                      "label or mask, e.g. scan.nii.gz scan_seg.nii.gz)"))
            continue
        for structure in structures:
            try:
                value, name = resolve_structure(row, structure)
            except ValueError as exc:
                errors.append((row["id"], str(exc).split(": ", 1)[-1]))
                continue
            sid = structure_id(row["id"], name)
            made.append(sid)
            if project.has_sample(sid):
                continue
            meta = {k: v for k, v in (row["metadata"] or {}).items() if k.startswith("mask_label")}
            meta.update({"scan": row["id"], "structure": name, "label_value": int(value)})
            voxels = (row["metadata"] or {}).get("mask_label_voxels", {}).get(name)
            if voxels is not None:
                meta["structure_voxels"] = voxels
            records.append(SampleRecord(
                id=sid, dataset=row["dataset"], source_path=row["source_path"], modality=row["modality"],
                kind="structure", split=row["split"], shape=row["shape"], geometry=row["geometry"],
                metadata=meta, data_file=row["data_file"],
                data_index=None if row["data_index"] is None or row["data_index"] != row["data_index"]
                else int(row["data_index"]),
                mask_file=row["mask_file"],
                mask_index=None if row["mask_index"] is None or row["mask_index"] != row["mask_index"]
                else int(row["mask_index"])))
    if records:
        project.add_samples(records, author="structure")
    return made, errors


# ---------------------------------------------------------------------------- points
def missing_point_ids(project, ids=None) -> list[str]:
    """Shape samples (mask, mesh, structure) without a point cloud in ``points``."""
    shapes = [r["id"] for r in project.sample_rows(None if ids is None else list(ids))
              if r["kind"] in ("mask", "mesh", "structure")]
    have = set()
    if project.arrays.exists("points"):
        from .place import npz_member

        have = set(np.asarray(npz_member(project.arrays.path("points"), "ids")).astype(str))
    return [s for s in shapes if s not in have]


def project_n_points(project) -> int:
    """Points per shape of the project's point clouds (new ones must match what a run reads),
    1024 when there are none yet."""
    if project.arrays.exists("points"):
        import zipfile

        import numpy as np

        with zipfile.ZipFile(project.arrays.path("points")) as zf, zf.open("data.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(fh)[0]
        if len(shape) == 3:
            return int(shape[1])
    return DEFAULT_N_POINTS


def points_steps(project, ids, *, n_points: int = DEFAULT_N_POINTS, seed: int = 0):
    """Generator: mesh + points of ``ids`` (the one caller of ``compute_points``); returns the
    (id, reason) failures."""
    from ..preprocess.shapes import compute_points

    if not ids:
        return []
    failures = yield from compute_points(project, ids=list(ids), n_points=n_points, seed=seed)
    return list(failures or [])


def derive_missing_steps(project, *, n_points: int = DEFAULT_N_POINTS):
    """Generator: recompute the point clouds any shape sample lacks."""
    return (yield from points_steps(project, missing_point_ids(project), n_points=n_points))


# ---------------------------------------------------------------------------- import and derive
def sources_sample_ids(project, sources, report) -> list[str]:
    """The samples the sources stand for: imported now, or already in the project from the
    same files (re-importing a file finds its existing samples)."""
    ids = list(report.ids)
    paths = set()
    for src in sources:
        p = Path(src).expanduser()
        try:
            paths.add(str(p.resolve()))
        except OSError:
            paths.add(str(p))
        paths.add(str(src))
    if report.already:
        known = set(ids)
        for chunk_start in range(0, len(paths), 500):
            chunk = list(paths)[chunk_start:chunk_start + 500]
            q = ",".join("?" * len(chunk))
            for (sid,) in project.query(f"SELECT id FROM samples WHERE source_path IN ({q}) AND kind != 'structure'"
                                        " ORDER BY rowid", chunk):
                if sid not in known:
                    ids.append(sid)
                    known.add(sid)
    return ids


def attached_label_maps(project, sources) -> dict[str, str]:
    """{source: scan id} for the sources that are label maps already attached to a scan."""
    import json

    from ..io.labelmaps import is_label_map_name

    out = {}
    files = [s for s in sources if Path(s).expanduser().is_file() and is_label_map_name(s)]
    if not files:
        return out
    by_source = {}
    for sid, meta in project.query("SELECT id, metadata FROM samples WHERE kind != 'structure'"
                                   " AND mask_file IS NOT NULL ORDER BY rowid"):
        src = (json.loads(meta or "{}") or {}).get("mask_source")
        if src:
            by_source.setdefault(str(src), sid)
            try:
                by_source.setdefault(str(Path(src).resolve()), sid)
            except OSError:
                pass
    for src in files:
        p = Path(src).expanduser()
        for key in (str(src), str(p), str(p.resolve())):
            if key in by_source:
                out[str(src)] = by_source[key]
                break
    return out


def import_and_derive_steps(project, sources, *, dataset: str | None = None, modality: str | None = None,
                            structures=(), points: bool = True, n_points: int | None = None,
                            report: DeriveReport | None = None, keep_identifiers: bool = False):
    """Generator (one Progress per file, then per shape): import ``sources``, make the chosen
    ``structures`` of their label maps into samples, and compute the meshes and points of the
    new shapes. Fills ``report`` (also the return value); ``report.sample_ids`` are the samples
    the sources stand for (a scan's structures instead of the scan when structures are chosen).
    """
    from ..io import ImportReport, import_steps

    report = report if report is not None else DeriveReport()
    report.import_report = ImportReport()
    n_points = int(n_points or project_n_points(project))
    report.n_points = n_points
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [str(s) for s in sources]
    # a label map already attached to its scan is not new: importing it again without its
    # (already imported) scan would make it a sample of its own
    attached = attached_label_maps(project, sources)
    sources = [s for s in sources if s not in attached]
    yield from import_steps(project, sources, dataset=dataset, modality=modality, report=report.import_report,
                            keep_identifiers=keep_identifiers)
    if report.import_report.cancelled:
        return report
    ids = sources_sample_ids(project, sources, report.import_report)
    ids += [sid for sid in dict.fromkeys(attached.values()) if sid not in ids]
    structures = [s for s in (structures or []) if str(s).strip()]
    if structures:
        made, errors = add_structures(project, ids, structures)
        report.structure_ids, report.structure_errors = made, errors
        scans = {sid.rsplit("/", 1)[0] for sid in made}
        ids = [s for s in ids if s not in scans] + made
    report.sample_ids = ids
    if points:
        todo = missing_point_ids(project, ids)
        report.points_ids = todo
        report.points_failed = yield from points_steps(project, todo, n_points=n_points)
    return report


def import_and_derive(project, sources, *, progress=None, **kw) -> DeriveReport:
    """:func:`import_and_derive_steps` run to the end (``progress(p)`` per step)."""
    return run_to_end(import_and_derive_steps(project, sources, **kw), progress)
