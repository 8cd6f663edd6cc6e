"""Place new samples against an existing run, keeping everything the user made.

A new sample is embedded with the run's trained method (no retraining), assigned to its
nearest existing cluster centroid (or the method's own head, e.g. PICA's, when the clustering
came from it), gets that cluster's effective prediction (manual override, else Algorithm 1,
with its development-set support) and its k nearest known cases by cosine distance. Nothing
is re-clustered; the Algorithm-1 mapping, the overrides and every existing assignment stay
byte-identical. With ``store`` (default) the new rows are appended to the run's embedding, its
projections and its clustering, so the app shows them like any other sample.

:class:`Placer` keeps a run loaded (method, normalised embedding, centroids, predictions):
the app and ``bench/query.py`` place case after case without reloading ("warm").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mapping import Prediction


@dataclass
class Neighbour:
    id: str
    distance: float
    labels: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "label": ", ".join(self.labels), "distance": float(self.distance)}


@dataclass
class Placement:
    id: str
    cluster: int | None
    prediction: Prediction
    neighbours: list[Neighbour]
    embedded_now: bool = True        # False when the sample was already in the run's embedding

    def as_dict(self) -> dict:
        return {"id": self.id, "cluster": self.cluster, "predicted": self.prediction.as_dict(),
                "neighbours": [n.as_dict() for n in sorted(self.neighbours, key=lambda n: n.distance)]}


def npz_member(path, member: str) -> np.ndarray:
    """One array of an ``.npz`` without reading the others: memory-mapped when stored
    uncompressed (as ``ArrayStore`` writes them), so reading a few rows of a large array (the
    points of the new cases among every shape's) costs only those rows."""
    import struct
    import zipfile

    fmt = np.lib.format
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member + ".npy")
        with zf.open(info) as fh:
            if info.compress_type != zipfile.ZIP_STORED:
                return fmt.read_array(fh, allow_pickle=False)
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            header_len = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {member} holds Python objects; refusing to read it")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        n_name, n_extra = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + n_name + n_extra + header_len
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order="F" if fortran else "C")


def array_rows(project, name: str, ids) -> tuple[list[str], np.ndarray]:
    """``(ids found, their rows)`` of a stored array, reading only those rows."""
    path = project.arrays.path(name)
    all_ids = np.asarray(npz_member(path, "ids")).astype(str)
    pos = {s: i for i, s in enumerate(all_ids)}
    found = [str(s) for s in ids if str(s) in pos]
    data = npz_member(path, "data")
    rows = np.array([pos[s] for s in found], dtype=int)
    return found, np.asarray(data[rows]) if len(rows) else np.empty((0, *data.shape[1:]), data.dtype)


def labels_of(project, ids) -> dict[str, list[str]]:
    """Labels of a few samples (label-set order), without reading every label of the project."""
    ids = [str(s) for s in ids]
    out: dict[str, list[str]] = {s: [] for s in ids}
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        q = ",".join("?" * len(chunk))
        for sid, name in project.query(
                "SELECT l.sample_id, s.name FROM labels l JOIN label_set s ON s.id=l.label_id"
                f" WHERE l.sample_id IN ({q}) ORDER BY s.position, s.id", chunk):
            out[sid].append(name)
    return out


def knn(features_unit: np.ndarray, queries_unit: np.ndarray, k: int, exclude=None):
    """Per query row: (row indices, cosine distances) of the ``k`` nearest rows, nearest first.
    ``exclude``: per query, a row index to leave out (itself) or -1."""
    n = len(features_unit)
    out = []
    if n == 0 or k <= 0:
        return [(np.empty(0, int), np.empty(0, np.float32)) for _ in range(len(queries_unit))]
    d_all = 1.0 - queries_unit @ features_unit.T
    for qi in range(len(queries_unit)):
        d = d_all[qi]
        if exclude is not None and exclude[qi] >= 0:
            d = d.copy()
            d[exclude[qi]] = np.inf
        kk = min(k, n - (1 if exclude is not None and exclude[qi] >= 0 else 0))
        if kk <= 0:
            out.append((np.empty(0, int), np.empty(0, np.float32)))
            continue
        idx = np.argpartition(d, kk - 1)[:kk]
        # the k distances again in float64: neighbours of a collapsed run lie 1e-5 apart, below
        # the float32 dot product's resolution
        a = np.asarray(features_unit[idx], dtype=np.float64)
        qv = np.asarray(queries_unit[qi], dtype=np.float64)
        cos = (a @ qv) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(qv), 1e-300)
        d64 = np.clip(1.0 - cos, 0.0, 2.0)
        order = np.argsort(d64, kind="stable")
        out.append((idx[order], d64[order]))
    return out


class Placer:
    """A run loaded once for placing new samples: ``Placer(project).place(ids)``."""

    def __init__(self, project, run_id: int | None = None, *, clustering: str | None = None, method=None):
        from ..cluster import l2_normalise
        from .runs import pick_embedded_run

        self.project = project
        self.run_id = pick_embedded_run(project, run_id)
        self.run = project.run(self.run_id) if self._run_recorded() else None
        self._method = method
        self.ids, feats = project.embedding(self.run_id)
        self.features = np.asarray(feats, dtype=np.float32)
        self.unit = l2_normalise(self.features)
        self.row = {s: i for i, s in enumerate(self.ids)}
        self.clustering = clustering or self._default_clustering()
        self._cents = None
        self._per_cluster = None
        self._pending: list[tuple] = []     # placed with store="later", not yet stored

    def _run_recorded(self) -> bool:
        return bool(self.project.query("SELECT 1 FROM runs WHERE id=?", (int(self.run_id),)))

    def _default_clustering(self) -> str | None:
        active = self.project.active_clustering_name
        mine = self.project.clustering_names(self.run_id)
        if active and (active in mine or not mine) and self.project.has_clustering(active):
            return active
        return mine[-1] if mine else None

    @property
    def method(self):
        if self._method is None:
            from .runs import load_run_method

            if self.run is None:
                raise ValueError(f"embedding of run {self.run_id} has no recorded run with a checkpoint: "
                                 "new samples cannot be embedded with it")
            self._method = load_run_method(self.run, self.project)
        return self._method

    @property
    def input_kind(self) -> str:
        """The kind of input the run's method reads ('points', 'image2d', 'volume', ...)."""
        if self._method is not None:
            return getattr(self._method, "input_kind", "")
        if self.run is None:
            return ""
        params = self.run.get("params") or {}
        if isinstance(params, dict) and params.get("input_kind"):  # e.g. the PCA first map's
            return str(params["input_kind"])
        from .runs import method_class

        return getattr(method_class(self.run["method"]), "input_kind", "")

    def _cluster_state(self):
        if self._cents is None and self.clustering:
            from .clustering import centroids
            from .mapping import cluster_predictions

            info = self.project.clustering_info(self.clustering)
            self._params = info["params"]
            self._cents = centroids(self.project, self.clustering, self.ids, self.features, row=self.row)
            self._per_cluster = cluster_predictions(self.project, self.clustering)
        return self._cents

    def refresh_predictions(self) -> None:
        """Re-read the mapping/overrides (after the user edited them)."""
        self._per_cluster = None
        self._cents = None

    def embed_new(self, ids) -> np.ndarray:
        """Embed samples that are not in the run's embedding with the run's method."""
        from .runs import load_method_data

        ids = [str(s) for s in ids]
        method = self.method
        if (getattr(method, "input_kind", "") == "points" and not hasattr(method, "load_data")
                and self.project.arrays.exists("points")):
            from ..dataset import SampleSet

            found, x = array_rows(self.project, "points", ids)   # only the new cases' rows
            data = SampleSet(ids=np.asarray(found, dtype=str), x=x)
        else:
            data = load_method_data(self.project, method, ids=ids)
        pos = {s: i for i, s in enumerate(data.ids)}
        missing = [s for s in ids if s not in pos]
        if missing:
            kind = self.input_kind or "its input"
            raise ValueError(f"{len(missing)} sample(s) have no {kind} that run {self.run_id} "
                             f"({self.run['method'] if self.run else '?'}) reads, e.g. {missing[0]!r}"
                             + (": import a mask or mesh (or a scan with --structure)" if kind == "points" else ""))
        data = data.subset(np.array([pos[s] for s in ids]))
        self._last_data = data
        return np.asarray(self.method.transform(data), dtype=np.float32)

    def place(self, ids, k: int = 8, *, store: bool | str = True) -> list[Placement]:
        """Embed (when new), assign, predict and find the k nearest known cases of ``ids``.

        ``store``: True appends the new rows to the run's arrays and clustering before
        returning; ``"later"`` keeps them until :meth:`store_placed` (``latentmap query`` prints
        the answer first: rewriting a 100,000-row embedding is not needed for it); False never."""
        from ..cluster import l2_normalise
        from .clustering import by_head, head_assign, nearest_cluster

        ids = list(dict.fromkeys(str(s) for s in ids))
        new = [s for s in ids if s not in self.row]
        feats = {}
        if new:
            emb = self.embed_new(new)
            feats.update(zip(new, emb))
        for s in ids:
            if s not in feats:
                feats[s] = self.features[self.row[s]]
        q = l2_normalise(np.stack([feats[s] for s in ids]))
        exclude = np.array([self.row.get(s, -1) for s in ids])
        nn = knn(self.unit, q, k, exclude=exclude)
        known_ids = [[str(self.ids[j]) for j in idx] for idx, _ in nn]
        labels = labels_of(self.project, {s for row in known_ids for s in row})

        clusters: dict[str, int | None] = {}
        if self.clustering:
            stored = self.project.cluster_assignments(self.clustering, ids)
            todo = [s for s in ids if s not in stored]
            if todo:
                cl, cents = self._cluster_state()
                guess = None
                if by_head(self._params) and new and set(todo) <= set(new):
                    # the clustering came from one of the method's heads: that head places them
                    data = self._last_data
                    sel = np.array([list(data.ids).index(s) for s in todo])
                    guess = head_assign(self.method, self._params, data.subset(sel))
                if guess is None:
                    guess = nearest_cluster(cl, cents, np.stack([feats[s] for s in todo]))
                stored.update({s: int(g) for s, g in zip(todo, guess)})
            clusters = stored
            self._cluster_state()
        out = []
        for i, s in enumerate(ids):
            c = clusters.get(s)
            if c is None:
                pred = Prediction(reason="the run has no clustering to place the sample in")
            else:
                pred = (self._per_cluster or {}).get(c) or Prediction(cluster=c, reason=f"cluster {c} has no vector")
            idx, dist = nn[i]
            nbrs = [Neighbour(known_ids[i][j], float(dist[j]), labels.get(known_ids[i][j], []))
                    for j in range(len(idx))]
            out.append(Placement(s, c, pred, nbrs, embedded_now=s in new))
        if store and new:
            pending = (new, np.stack([feats[s] for s in new]), [nn[ids.index(s)] for s in new],
                       {s: clusters[s] for s in new if clusters.get(s) is not None})
            if store == "later":
                self._pending.append(pending)
            else:
                self._store(pending[0], pending[1], nn=pending[2], clusters=pending[3])
        return out

    def store_placed(self) -> int:
        """Store what :meth:`place` with ``store="later"`` kept; returns the rows stored."""
        n = 0
        while self._pending:
            new_ids, new_feats, nn, clusters = self._pending.pop(0)
            keep = [i for i, s in enumerate(new_ids) if s not in self.row]   # placed twice before storing
            if keep:
                kept = [new_ids[i] for i in keep]
                self._store(kept, new_feats[keep], nn=[nn[i] for i in keep],
                            clusters={s: clusters[s] for s in kept if s in clusters})
                n += len(kept)
        return n

    def _store(self, new_ids, new_feats, *, nn, clusters) -> None:
        """Append the new rows to the embedding, its projections and the clustering."""
        from ..cluster import l2_normalise
        from .projections import project_new

        old_ids, old_feats = self.ids, self.features
        for kind in ("pca", "umap"):
            project_new(self.project, self.run_id, kind, new_ids, new_feats, known_ids=old_ids,
                        known_features=old_feats, neighbours=nn)
        self.ids = np.concatenate([old_ids, np.asarray(new_ids, dtype=str)])
        self.features = np.concatenate([old_feats, new_feats.astype(np.float32)])
        self.unit = np.concatenate([self.unit, l2_normalise(new_feats)])
        self.row.update({s: len(old_ids) + i for i, s in enumerate(new_ids)})
        self.project.save_embedding(self.run_id, self.ids, self.features)
        if self.clustering and clusters:
            self.project.add_cluster_assignments(self.clustering, list(clusters), list(clusters.values()))


def place_samples(project, ids, *, run_id: int | None = None, k: int = 8, clustering: str | None = None,
                  store: bool = True, method=None) -> list[Placement]:
    """One-shot :meth:`Placer.place` (loads the run, places ``ids``)."""
    return Placer(project, run_id, clustering=clustering, method=method).place(ids, k, store=store)
