"""Exports of what users made: labels, cluster mappings, embeddings, projections, selections.

Headless so the CLI, the app and scripts write the same files. Tables go out as CSV or
parquet, chosen by the file suffix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .project.arrays import atomic_write_bytes


def write_table(df: pd.DataFrame, path) -> Path:
    """CSV for ``.csv``, parquet for ``.parquet``/``.pq``; written atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = df.to_csv(index=False).encode()
    elif suffix in (".parquet", ".pq"):
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        data = buf.getvalue()
    else:
        raise ValueError(f"{path}: export as .csv or .parquet")
    atomic_write_bytes(path, lambda fh: fh.write(data))
    return path


def labels_table(project) -> pd.DataFrame:
    """One row per (sample, label) with author and time, plus split and dev-set flag."""
    rows = project.query(
        "SELECT l.sample_id, s.name, l.author, l.time, x.split, x.dev FROM labels l"
        " JOIN label_set s ON s.id = l.label_id JOIN samples x ON x.id = l.sample_id"
        " ORDER BY x.rowid, s.position")
    return pd.DataFrame(rows, columns=["sample_id", "label", "author", "time", "split", "dev"]).assign(
        dev=lambda d: d["dev"].astype(bool))


def cluster_mapping_table(project, clustering: str) -> pd.DataFrame:
    """Per cluster: size, development-set count, Algorithm-1 vector and manual override."""
    ids, assign = project.load_clustering(clustering)
    sizes = pd.Series(assign).value_counts().sort_index()
    vec = project.cluster_vectors(clustering)
    names = project.label_names()
    rows = []
    for k, size in sizes.items():
        row = {"clustering": clustering, "cluster": int(k), "size": int(size)}
        for source in ("algorithm1", "manual"):
            hit = vec[(vec["cluster"] == k) & (vec["source"] == source)]
            if not hit.empty:
                v = hit.iloc[0]["vector"]
                if source == "algorithm1":
                    row["n_dev"] = int(hit.iloc[0]["n_dev"])
                for n in names:
                    if n in v:
                        row[f"{source}:{n}"] = v[n]
        row["matched"] = row.get("n_dev", 0) > 0
        rows.append(row)
    return pd.DataFrame(rows)


def array_table(project, name: str, prefix: str = "f") -> pd.DataFrame:
    """An id-keyed array (embedding, projection) as a table: sample_id, f0, f1, ..."""
    ids, data = project.arrays.load(name)
    data = np.asarray(data).reshape(len(data), -1)
    df = pd.DataFrame(data, columns=[f"{prefix}{i}" for i in range(data.shape[1])])
    df.insert(0, "sample_id", ids if ids is not None else np.arange(len(data)).astype(str))
    return df


def selection_manifest(project, sample_ids: Sequence[str]) -> pd.DataFrame:
    """A manifest (``path`` column first) that ``latentmap import`` reads back, one row per
    sample: a sample that is one of many in its file (a MedMNIST ``.npz`` row, a 4-D frame, a
    DICOM series of a folder) has its ``sample_key`` (the id after the file's part, e.g.
    ``train/00042``), so importing the manifest imports exactly these samples."""
    df = project.samples(ids=list(sample_ids))
    labels = project.labels(list(sample_ids))
    return pd.DataFrame({
        "path": df["source_path"], "sample_key": [_sample_key(r) for r in df.to_dict("records")],
        "sample_id": df["id"], "split": df["split"],
        "label": [";".join(labels.get(s, [])) for s in df["id"]],
        "dataset": df["dataset"], "modality": df["modality"],
    })


def _sample_key(row: dict) -> str:
    sid = str(row["id"])
    if "/" not in sid or row.get("kind") == "structure":
        return ""
    return sid.split("/", 1)[1]


def export_all(project, folder, *, fmt: str = "csv") -> list[Path]:
    """Labels, every clustering's mapping, every embedding and projection into ``folder``."""
    folder = Path(folder)
    out = [write_table(labels_table(project), folder / f"labels.{fmt}")]
    for name in project.clusterings()["name"]:
        out.append(write_table(cluster_mapping_table(project, name), folder / f"clusters_{name}.{fmt}"))
    for name in project.arrays.names("embeddings/") + project.arrays.names("projections/"):
        fname = name.replace("/", "_")
        out.append(write_table(array_table(project, name), folder / f"{fname}.parquet"))
    return out


def sample_table(project, clustering: str | None = None) -> pd.DataFrame:
    """One row per sample, unlabelled ones included: id, split, labels, development-set flag,
    cluster, the Algorithm-1 prediction with its support and score, and whether the cluster's
    label was set by hand (override). ``clustering`` defaults to the active one. Counts are
    integer columns (nullable ``Int64``: empty where a sample is outside the clustering)."""
    from .workflows.mapping import cluster_predictions

    df = project.samples()
    labels = project.labels(df["id"].tolist())
    if clustering is None:
        clustering = project.meta("active_clustering") or None
    clusters: dict = {}
    preds: dict = {}
    if clustering:
        clusters = project.cluster_assignments(clustering)
        preds = cluster_predictions(project, clustering)
    rows = []
    for sid, split, dev in zip(df["id"], df["split"], df["dev"]):
        k = clusters.get(sid)
        p = preds.get(k) if k is not None else None
        rows.append({
            "id": sid, "split": split or "", "labels": ";".join(labels.get(sid, [])),
            "development_set": bool(dev), "cluster": k,
            "prediction": ";".join(p.labels) if p is not None else "",
            "support": p.support if p is not None and p.source == "algorithm1" else None,
            "score": p.score if p is not None and p.labels else None,
            "override": bool(p is not None and p.source == "manual"),
        })
    out = pd.DataFrame(rows, columns=["id", "split", "labels", "development_set", "cluster", "prediction",
                                      "support", "score", "override"])
    for col in ("cluster", "support"):
        out[col] = pd.array(out[col], dtype="Int64")
    out["score"] = pd.to_numeric(out["score"], errors="coerce").astype("float64")
    return out
