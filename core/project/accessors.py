"""Typed accessors for what a run leaves in a project: its embedding, its 2-D projections and
its clusterings. Every array key and run name is spelled here, once.

Mixed into :class:`core.project.Project`; the methods only use ``self.arrays``,
``self.transaction()``, ``self.query()`` and ``self.meta()``.
"""
from __future__ import annotations

import re

import numpy as np

_RUN_KEY = re.compile(r"^run-(\d+)$")

#: the projection kinds the app shows; ``umap`` is the UMAP of every embedded sample
PROJECTION_KINDS = ("pca", "umap")


def run_name(run_id: int) -> str:
    """``run-0007``: how a run is named in array keys and clustering names."""
    return f"run-{int(run_id):04d}"


def run_id_of(name: str) -> int | None:
    """7 for ``run-0007`` (or ``embeddings/run-0007``), None for a name that is not a run's."""
    m = _RUN_KEY.match(str(name).rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def embedding_key(run_id: int) -> str:
    return f"embeddings/{run_name(run_id)}"


def projection_key(run_id: int, kind: str = "pca", split: str = "all") -> str:
    """``projections/run-0007-pca``; a UMAP of one split only is ``…-umap-<split>`` (the app
    reads the ``all`` one, which has no suffix)."""
    key = f"projections/{run_name(run_id)}-{kind}"
    return key if split in ("", "all", None) else f"{key}-{split}"


def residuals_key(run_id: int) -> str:
    return f"residuals/{run_name(run_id)}"


def default_clustering_name(run_id: int, source: str) -> str:
    """``run-0007-head`` (the method's own clusters) or ``run-0007-kmeans6``."""
    return f"{run_name(run_id)}-{source}"


class RunArrays:
    """Embeddings, projections and clusterings of runs (mixed into ``Project``)."""

    # ------------------------------------------------------------------ embeddings
    def has_embedding(self, run_id: int) -> bool:
        return self.arrays.exists(embedding_key(run_id))

    def embedding(self, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids as str, features N x D)`` of a run; ValueError naming the fix when missing."""
        key = embedding_key(run_id)
        if not self.arrays.exists(key):
            raise ValueError(f"run {run_id} has no stored embedding ({key}); "
                             f"run `latentmap embed --project {self.path} --run {run_id}`")
        ids, data = self.arrays.load(key)
        return np.asarray(ids).astype(str), data

    def save_embedding(self, run_id: int, ids, features) -> str:
        key = embedding_key(run_id)
        self.arrays.save(key, np.asarray(features, dtype=np.float32), ids=ids)
        return key

    def embedded_runs(self) -> list[int]:
        """Ids of the runs with a stored embedding, oldest first."""
        out = [run_id_of(n) for n in self.arrays.names("embeddings/")]
        return sorted(r for r in out if r is not None)

    # ------------------------------------------------------------------ projections
    def has_projection(self, run_id: int, kind: str = "pca") -> bool:
        return self.arrays.exists(projection_key(run_id, kind))

    def projection(self, run_id: int, kind: str = "pca", split: str = "all"):
        """``(ids, N x 2)`` or None when not stored."""
        key = projection_key(run_id, kind, split)
        if not self.arrays.exists(key):
            return None
        ids, xy = self.arrays.load(key)
        return np.asarray(ids).astype(str), xy

    def projection_extra(self, run_id: int, kind: str = "pca") -> dict:
        """Everything stored with a projection (e.g. the PCA's ``mean`` and ``components``)."""
        key = projection_key(run_id, kind)
        return self.arrays.load_extra(key) if self.arrays.exists(key) else {}

    def save_projection(self, run_id: int, kind: str, ids, xy, *, split: str = "all", **extra) -> str:
        key = projection_key(run_id, kind, split)
        self.arrays.save(key, np.asarray(xy, dtype=np.float32), ids=ids, **extra)
        return key

    # ------------------------------------------------------------------ clusterings
    def clustering_names(self, run_id: int | None = None) -> list[str]:
        if run_id is None:
            return [r[0] for r in self.query("SELECT name FROM clusterings ORDER BY created_at")]
        return [r[0] for r in self.query(
            "SELECT name FROM clusterings WHERE run_id=? ORDER BY created_at", (int(run_id),))]

    def has_clustering(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM clusterings WHERE name=?", (name,)))

    def clustering_info(self, name: str) -> dict:
        import json

        row = self.query("SELECT name, run_id, n_clusters, params, created_at FROM clusterings WHERE name=?",
                         (name,))
        if not row:
            from .store import ProjectError

            raise ProjectError(f"no clustering named {name!r}")
        n, run_id, k, params, created = row[0]
        return {"name": n, "run_id": run_id, "n_clusters": int(k or 0),
                "params": json.loads(params or "{}"), "created_at": created}

    def unique_clustering_name(self, base: str) -> str:
        """``base`` when free, else ``base-2``, ``base-3``, ...: a new clustering never replaces one."""
        if not self.has_clustering(base):
            return base
        i = 2
        while self.has_clustering(f"{base}-{i}"):
            i += 1
        return f"{base}-{i}"

    def add_cluster_assignments(self, name: str, sample_ids, clusters) -> int:
        """Assign samples not yet in clustering ``name`` (new samples placed into it); rows of
        samples already assigned are left exactly as they are. Returns the number added."""
        clusters = np.asarray(clusters).astype(int)
        if len(sample_ids) != len(clusters):
            raise ValueError("one cluster per sample expected")
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM clusterings WHERE name=?", (name,)).fetchone():
                from .store import ProjectError

                raise ProjectError(f"no clustering named {name!r}")
            asked = list(dict.fromkeys(str(s) for s in sample_ids))
            have = set()
            for i in range(0, len(asked), 900):          # only the asked ids, not the whole clustering
                chunk = asked[i:i + 900]
                have.update(r[0] for r in c.execute(
                    f"SELECT sample_id FROM cluster_assignments WHERE clustering=? AND sample_id IN"
                    f" ({','.join('?' * len(chunk))})", (name, *chunk)).fetchall())
            rows = {str(s): int(k) for s, k in zip(sample_ids, clusters) if str(s) not in have}
            c.executemany("INSERT INTO cluster_assignments VALUES (?,?,?)",
                          [(name, s, k) for s, k in rows.items()])
            return len(rows)

    def cluster_assignments(self, name: str, sample_ids=None) -> dict[str, int]:
        """sample id -> cluster of clustering ``name`` (only the asked ids when given)."""
        if sample_ids is None:
            rows = self.query("SELECT sample_id, cluster FROM cluster_assignments WHERE clustering=?", (name,))
            return {r[0]: int(r[1]) for r in rows}
        asked = list(dict.fromkeys(map(str, sample_ids)))
        out = {}
        for i in range(0, len(asked), 900):              # only the asked rows (a few new cases of 100,000)
            chunk = asked[i:i + 900]
            out.update((r[0], int(r[1])) for r in self.query(
                "SELECT sample_id, cluster FROM cluster_assignments WHERE clustering=? AND sample_id IN"
                f" ({','.join('?' * len(chunk))})", (name, *chunk)))
        return out

    # ------------------------------------------------------------------ active run / clustering
    @property
    def active_run_id(self) -> int | None:
        v = self.meta("active_run")
        return int(v) if v not in (None, "") else None

    @property
    def active_clustering_name(self) -> str | None:
        return self.meta("active_clustering") or None

    # ------------------------------------------------------------------ undoable new clustering
    def add_clustering(self, name: str, sample_ids, assignments, *, run_id=None, params: dict | None = None,
                       activate: bool = True, author=None) -> str:
        """Store a NEW clustering (``name`` must be free: existing clusterings, their Algorithm-1
        mapping and overrides are never replaced) as one undoable action; with ``activate`` it
        becomes the active clustering. Undo removes it and re-activates the previous one."""
        from .store import ProjectError, default_author, now

        if self.has_clustering(name):
            raise ProjectError(f"a clustering named {name!r} already exists; choose another name")
        assignments = np.asarray(assignments).astype(int)
        if len(sample_ids) != len(assignments):
            raise ValueError("one cluster per sample expected")
        payload = {"name": name, "run_id": None if run_id is None else int(run_id),
                   "params": params or {}, "ids": [str(s) for s in sample_ids],
                   "assign": assignments.tolist(), "activate": bool(activate),
                   "previous_active": self.meta("active_clustering") or ""}
        with self.transaction() as c:
            self._apply_clustering_action(c, payload, forward=True)
            self._push_history(c, "clustering", payload, author or default_author(), now())
        return name

    def _apply_clustering_action(self, c, payload: dict, *, forward: bool) -> None:
        import json

        from .store import _jsonable, now

        name = payload["name"]
        if forward:
            ids, assign = payload["ids"], payload["assign"]
            n = (max(assign) + 1) if assign else 0
            c.execute("INSERT INTO clusterings VALUES (?,?,?,?,?)",
                      (name, payload.get("run_id"), n, json.dumps(_jsonable(payload.get("params") or {})), now()))
            c.executemany("INSERT INTO cluster_assignments VALUES (?,?,?)",
                          [(name, s, int(a)) for s, a in zip(ids, assign)])
            if payload.get("activate"):
                c.execute("INSERT OR REPLACE INTO meta VALUES ('active_clustering', ?)", (name,))
        else:
            c.execute("DELETE FROM clusterings WHERE name=?", (name,))
            active = c.execute("SELECT value FROM meta WHERE key='active_clustering'").fetchone()
            if active is not None and active[0] == name:
                c.execute("INSERT OR REPLACE INTO meta VALUES ('active_clustering', ?)",
                          (payload.get("previous_active") or "",))
