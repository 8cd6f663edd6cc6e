"""Algorithm 1 against a project: development-set labels in, stored cluster label vectors out,
and the per-cluster summary the app's clusters panel shows."""
from __future__ import annotations

from collections import Counter

import numpy as np


def run_algorithm1(project, clustering: str) -> dict:
    """Algorithm 1 on ``clustering`` with the project's development set
    (``core.workflows.mapping.algorithm1``: the one implementation, with the ``other`` column).

    Clusters without a development sample get no vector (they show as unmatched). The vectors
    are stored in the project (source ``algorithm1``); manual overrides are kept as they are.
    Returns ``{"vectors": {cluster: {label: mean}}, "counts": {cluster: n_dev}, "unmatched": [...]}``.
    """
    from ..workflows.mapping import algorithm1

    r = algorithm1(project, clustering)
    return {"vectors": r.vectors, "counts": r.counts, "unmatched": r.unmatched}


def cluster_rows(project, clustering: str, *, labels: dict | None = None) -> list[dict]:
    """One dict per cluster: size, member ids, purity (when members are labelled), number of
    development-set members, Algorithm-1 vector, manual override, and the unmatched flag."""
    ids, assign = project.load_clustering(clustering)
    labels = labels if labels is not None else project.labels(ids)
    dev = set(project.dev_ids())
    vec = project.cluster_vectors(clustering)
    stored = {(int(r.cluster), r.source): r for r in vec.itertuples()}
    alg1_done = any(src == "algorithm1" for _, src in stored)
    members: dict[int, list[str]] = {}
    for sid, k in zip(ids, assign):
        members.setdefault(int(k), []).append(sid)
    rows = []
    for k in sorted(members):
        m = members[k]
        first_labels = [labels.get(s, [None])[0] if labels.get(s) else None for s in m]
        labelled = [lab for lab in first_labels if lab is not None]
        purity = Counter(labelled).most_common(1)[0][1] / len(labelled) if labelled else None
        a1 = stored.get((k, "algorithm1"))
        manual = stored.get((k, "manual"))
        n_dev = sum(s in dev for s in m)
        rows.append({
            "cluster": k, "size": len(m), "members": m, "purity": purity, "n_dev": n_dev,
            "algorithm1": a1.vector if a1 is not None else None,
            "manual": manual.vector if manual is not None else None,
            "unmatched": alg1_done and a1 is None and manual is None,
        })
    return rows
