"""2-D projections of a run's embedding, stored under the one key the app reads.

PCA is stored with its ``mean`` and ``components`` so new samples are projected exactly,
without refitting; UMAP has no stored model, so a new sample is placed at the distance-weighted
mean of its nearest known cases' UMAP positions (what the scatter shows for a placed case).
"""
from __future__ import annotations

import numpy as np

from ..jobs.steps import run_to_end


def store_pca(project, run_id: int, ids, features, *, fit_mask=None) -> str:
    """PCA fitted on ``fit_mask`` rows (the training split; all rows when None/empty)."""
    from ..projection import fit_pca

    x = np.asarray(features, dtype=np.float32)
    fit_rows = x if fit_mask is None or not np.any(fit_mask) else x[np.asarray(fit_mask)]
    pca = fit_pca(fit_rows, 2)
    xy = _pad2(pca.transform(x))
    return project.save_projection(run_id, "pca", ids, xy, mean=pca.mean_.astype(np.float32),
                                   components=pca.components_.astype(np.float32))


def _pad2(xy) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float32)
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))) if xy.shape[1] < 2 else xy


def umap_steps(project, run_id: int, split: str = "all"):
    """Generator: UMAP (cosine) of a run's embedding (one split, or all samples), one Progress
    per stage, stored as ``projections/run-XXXX-umap`` (``…-umap-<split>`` for one split).
    Returns the key written."""
    from ..projection import UMAPProjector

    ids, emb = project.embedding(run_id)
    if split not in ("all", "", None):
        want = project.samples(split=split)["id"].astype(str).to_numpy()
        keep = np.isin(ids, want)
        ids, emb = ids[keep], emb[keep]
    if len(ids) < 3:
        raise ValueError(f"run {run_id}: {len(ids)} embedded samples in split {split!r}, too few for UMAP")
    proj = UMAPProjector(n_neighbors=min(15, len(ids) - 1))
    yield from proj.steps(emb)
    return project.save_projection(run_id, "umap", ids, proj.embedding_, split=split or "all")


def store_umap(project, run_id: int, split: str = "all") -> str:
    """``umap_steps`` run to the end; returns a summary line."""
    key = run_to_end(umap_steps(project, run_id, split))
    n = len(project.arrays.load(key)[0])
    return f"projection: {key} ({n} samples)"


def project_new(project, run_id: int, kind: str, new_ids, new_features, *, known_ids=None,
                known_features=None, neighbours=None) -> bool:
    """Add rows for new samples to a stored projection without changing the known rows:
    exact PCA from its stored parameters (refitted on the stored rows' fit split when an older
    project lacks them); UMAP at the weighted mean of the nearest known cases
    (``neighbours``: per new sample, (known row indices, cosine distances)). False when the
    projection does not exist."""
    stored = project.projection(run_id, kind)
    if stored is None:
        return False
    ids, xy = stored
    new_ids = np.asarray(new_ids).astype(str)
    keep_new = ~np.isin(new_ids, ids)
    if not keep_new.any():
        return True
    new_ids, new_features = new_ids[keep_new], np.asarray(new_features)[keep_new]
    extra = project.projection_extra(run_id, kind)
    if kind == "pca":
        if "components" in extra and "mean" in extra:
            add = _pad2((new_features - extra["mean"]) @ extra["components"].T)
        else:
            add = _refit_pca(project, run_id, ids, known_ids, known_features, new_features)
        extra = {k: v for k, v in extra.items() if k in ("mean", "components")}
    else:
        if neighbours is None:
            return False
        pos = {s: i for i, s in enumerate(ids)}
        rows = []
        for (idx, dist) in [neighbours[i] for i in np.flatnonzero(keep_new)]:
            known = [pos.get(str(known_ids[j])) for j in idx]
            ok = [(p, d) for p, d in zip(known, dist) if p is not None]
            if not ok:
                rows.append(np.nanmean(xy, 0))
                continue
            w = np.array([1.0 / max(float(d), 1e-6) for _, d in ok])
            rows.append((xy[[p for p, _ in ok]] * w[:, None]).sum(0) / w.sum())
        add = np.asarray(rows, dtype=np.float32)
        extra = {}
    project.save_projection(run_id, kind, np.concatenate([ids, new_ids]),
                            np.concatenate([np.asarray(xy, np.float32), add.astype(np.float32)]), **extra)
    return True


def _refit_pca(project, run_id, ids, known_ids, known_features, new_features):
    from ..projection import fit_pca

    if known_ids is None:
        known_ids, known_features = project.embedding(run_id)
    pos = {s: i for i, s in enumerate(np.asarray(known_ids).astype(str))}
    rows = np.array([pos[s] for s in ids if s in pos], dtype=int)
    train = set(project.samples(split="train")["id"].astype(str))
    fit = np.array([str(known_ids[r]) in train for r in rows])
    x = np.asarray(known_features)[rows]
    pca = fit_pca(x[fit] if fit.any() else x, 2)
    return _pad2(pca.transform(np.asarray(new_features, dtype=np.float32)))
