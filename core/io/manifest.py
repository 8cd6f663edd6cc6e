"""CSV / TSV / parquet manifests: one row per file, with optional labels, split and metadata.

The path column is ``path`` (or file/filename/filepath/image/image_path/location, or else the
first column whose values name existing files). ``label``/``labels`` hold one label or several
separated by ``;`` or ``|``; ``split`` is train/val/test; every other column goes into the
sample metadata, except ``mask`` (a label map on the image's grid) and ``sample_key`` (which
sample of a many-sample file the row means, e.g. ``train/00042`` of a MedMNIST ``.npz``, as
``core.export.selection_manifest`` writes it). Relative paths are resolved against the
manifest's folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .registry import register
from .sample import ReadError

PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "image",
                "image_path", "location", "source")
LABEL_COLUMNS = ("label", "labels", "class", "classes", "target")
MASK_COLUMNS = ("mask", "mask_path", "seg", "segmentation", "label_map", "labelmap")
SPLIT_COLUMNS = ("split", "subset", "fold_split")
KEY_COLUMNS = ("sample_key",)
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class ManifestRow:
    row: int                # 1-based data row number, as a spreadsheet shows it (+1 for header)
    path: Path
    labels: list[str] = field(default_factory=list)
    split: str = ""
    metadata: dict = field(default_factory=dict)
    mask: Path | None = None   # a label map on the same grid (``mask`` column)
    key: str = ""              # one sample of a many-sample file (``sample_key`` column)


def _read_table(path: Path):
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix.lower() == ".tsv" else None
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types
        raise ReadError(path, f"cannot read manifest table ({type(exc).__name__}: {exc})") from exc


def _find_column(columns, wanted) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def split_labels(value) -> list[str]:
    if value is None:
        return []
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none"):
        return []
    return [t.strip() for t in re.split(r"[;|]", text) if t.strip()]


@register("manifest", "*.csv", "*.tsv", "*.parquet")
def read_manifest(path, **_) -> list[ManifestRow]:
    path = Path(path)
    df = _read_table(path)
    if df.empty:
        raise ReadError(path, "manifest has no rows")
    base = path.parent
    path_col = _find_column(df.columns, PATH_COLUMNS)
    if path_col is None:
        for col in df.columns:
            vals = [str(v) for v in df[col].head(20) if str(v).strip()]
            if vals and sum((base / v).exists() for v in vals) >= max(1, len(vals) // 2):
                path_col = col
                break
    if path_col is None:
        raise ReadError(path, "manifest has no path column (name one 'path'); columns: "
                              + ", ".join(map(str, df.columns)))
    label_col = _find_column(df.columns, LABEL_COLUMNS)
    split_col = _find_column(df.columns, SPLIT_COLUMNS)
    mask_col = _find_column(df.columns, MASK_COLUMNS)
    key_col = _find_column(df.columns, KEY_COLUMNS)
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=1):
        raw = str(rec[path_col]).strip()
        if not raw:
            continue
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = base / p
        split = ""
        if split_col is not None:
            split = SPLIT_ALIASES.get(str(rec[split_col]).strip().lower(), str(rec[split_col]).strip())
        mask = None
        if mask_col is not None and str(rec[mask_col]).strip():
            mask = Path(str(rec[mask_col]).strip()).expanduser()
            mask = mask if mask.is_absolute() else base / mask
        meta = {str(k): _plain(v) for k, v in rec.items()
                if k not in (path_col, label_col, split_col, mask_col, key_col)}
        meta["manifest"] = str(path)
        meta["manifest_row"] = i
        rows.append(ManifestRow(row=i, path=p, labels=split_labels(rec[label_col]) if label_col else [],
                                split=split, metadata=meta, mask=mask,
                                key=_key(rec[key_col]) if key_col else ""))
    return rows


def _key(v) -> str:
    text = "" if v is None else str(v).strip()
    return "" if text.lower() in ("", "nan", "none") else text


def _plain(v):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:
        pass
    if isinstance(v, float) and v != v:  # NaN -> None (JSON has no NaN)
        return None
    return v
