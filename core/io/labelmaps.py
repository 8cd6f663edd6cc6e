"""Label maps beside volumes: which file is a label map, which volume it belongs to, its names.

A file is a label map when a word of its name says so (``example_seg_mr.nii.gz``,
``case1_labels.nrrd``, ``liver_mask.mha``). It belongs to the volume in the same folder on the
same voxel grid (shape, spacing and origin) whose name shares most words with it; without a
real name match, or on a tie, it goes to no volume and the import reports it as unpaired. Names for label ids come from a ``*.json`` beside them,
either flat (``{"1": "spleen"}``) or keyed by label set (``{"total": {...}, "total_mr": {...}}``,
as TotalSegmentator ships them): the set that covers every id present and best matches the
file name or modality is used.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .volumes import name_tokens

LABEL_MAP_WORDS = {"seg", "segs", "segmentation", "segmentations", "label", "labels", "labelmap",
                   "labelmaps", "mask", "masks", "lbl", "aseg", "annotation", "annotations"}


def is_label_map_name(path) -> bool:
    return any(tok in LABEL_MAP_WORDS for tok in name_tokens(path))


def load_label_tables(folder) -> dict[str, dict[int, str]]:
    """{table name: {label id: name}} from the JSON files of ``folder`` ('' for a flat table)."""
    tables: dict[str, dict[int, str]] = {}
    for js in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        flat = _as_table(data)
        if flat:
            tables[js.stem] = flat
            continue
        for key, value in data.items():
            if isinstance(value, dict):
                t = _as_table(value)
                if t:
                    tables[str(key)] = t
    return tables


def _as_table(d: dict) -> dict[int, str] | None:
    try:
        out = {int(k): str(v) for k, v in d.items() if not isinstance(v, (dict, list))}
    except (TypeError, ValueError):
        return None
    return out if out and len(out) == len(d) else None


def choose_table(tables: dict[str, dict[int, str]], ids_present, *, path="", modality="") -> str | None:
    """The table covering every id present, preferring one whose name matches the file/modality."""
    ids = {int(i) for i in ids_present if int(i) != 0}
    if not tables or not ids:
        return None
    words = set(name_tokens(path)) | ({modality.lower()} if modality else set())
    best, best_score = None, None
    for name, table in tables.items():
        covered = ids <= set(table)
        overlap = len(words & set(name_tokens(name)))
        # A table made for another modality ("total_mr" for a CT label map) is a worse fit.
        foreign = len(set(name_tokens(name)) & {"ct", "mr", "mri", "pet", "us"} - words)
        score = (covered, overlap, -foreign, -len(table))
        if best_score is None or score > best_score:
            best, best_score = name, score
    return best if best_score[0] else None


def same_grid(shape_a, geom_a: dict, shape_b, geom_b: dict, tol: float = 1e-3) -> bool:
    if list(shape_a) != list(shape_b):
        return False
    for key in ("spacing", "origin"):
        a, b = geom_a.get(key), geom_b.get(key)
        if a is not None and b is not None and not np.allclose(a, b, atol=tol * max(1.0, np.abs(a).max())):
            return False
    return True


def pair_label_map(label_path, label_shape, label_geom, candidates) -> tuple[int | None, str]:
    """``(index, "")`` of the volume a label map belongs to, or ``(None, why)``.

    Candidates are ``(path, shape, geometry)``. Only volumes on the label map's voxel grid
    count, and one must share a word of its name with the label map (``patientA_seg`` ->
    ``patientA_ct``), more words than any other: a grid match alone would hand one patient's
    segmentation to another patient's scan when the right scan is missing or unreadable. A
    label map whose name has no word but the label-map word (``seg.nii.gz``) is paired with the
    only volume on its grid, if there is exactly one.
    """
    words = set(name_tokens(label_path)) - LABEL_MAP_WORDS
    on_grid = [(i, path, len(words & set(name_tokens(path))))
               for i, (path, shape, geom) in enumerate(candidates)
               if same_grid(label_shape, label_geom, shape, geom)]
    name = Path(str(label_path)).name
    if not on_grid:
        return None, "no volume on the same voxel grid in its folder"
    if not words:
        if len(on_grid) == 1:
            return on_grid[0][0], ""
        return None, ("its name does not say which volume it belongs to; volumes on its grid: "
                      + ", ".join(Path(str(p)).name for _, p, _ in on_grid))
    best = max(score for _, _, score in on_grid)
    top = [(i, p) for i, p, score in on_grid if score == best]
    if best == 0:
        return None, ("its name matches no volume on its grid ("
                      + ", ".join(Path(str(p)).name for _, p, _ in on_grid)
                      + "); it may belong to a scan that is missing or unreadable")
    if len(top) > 1:
        return None, ("its name matches several volumes equally: "
                      + ", ".join(Path(str(p)).name for _, p in top))
    return top[0][0], ""


def pick_volume(label_path, label_shape, label_geom, candidates):
    """Index of the candidate ``(path, shape, geometry)`` the label map belongs to, or None
    (see :func:`pair_label_map` for the rule and the reason)."""
    return pair_label_map(label_path, label_shape, label_geom, candidates)[0]


def describe_label_map(mask: np.ndarray, tables, *, path="", modality="") -> dict:
    """Metadata for a label map: ids present with voxel counts and their names."""
    ids, counts = np.unique(np.asarray(mask), return_counts=True)
    present = {int(i): int(c) for i, c in zip(ids, counts) if int(i) != 0}
    table_name = choose_table(tables, present, path=path, modality=modality)
    table = tables.get(table_name, {}) if table_name else {}
    names = {i: table.get(i, f"label_{i}") for i in present}
    return {
        "mask_source": str(path),
        "mask_label_table": table_name or "",
        "mask_label_names": {str(i): n for i, n in names.items()},
        "mask_label_voxels": {names[i]: c for i, c in present.items()},
    }
