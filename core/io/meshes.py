"""Surface meshes: STL, OBJ, PLY, OFF (trimesh) and VTK legacy/XML polydata (pyvista).

Polygons are triangulated; a mesh without faces (a bare point cloud) is refused because the
shape pipeline samples points by face area.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import register
from .sample import LoadedSample, ReadError


@register("mesh", "*.stl", "*.obj", "*.ply", "*.off", "*.vtk", "*.vtp")
def read_mesh(path, *, modality: str | None = None, **_):
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file (0 bytes)")
    if path.suffix.lower() in (".vtk", ".vtp"):
        vertices, faces = _read_pyvista(path)
    else:
        vertices, faces = _read_trimesh(path)
    if len(vertices) == 0:
        raise ReadError(path, "mesh has no vertices")
    if len(faces) == 0:
        raise ReadError(path, f"mesh has no faces ({len(vertices)} vertices only: a point cloud, "
                              "not a surface)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ReadError(path, "mesh faces index vertices that do not exist")
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    lo, hi = vertices.min(0), vertices.max(0)
    meta = {"n_vertices": int(len(vertices)), "n_faces": int(len(faces)),
            "bounds": [lo.tolist(), hi.tolist()], "format": path.suffix.lower().lstrip(".")}
    return [LoadedSample(array=None, kind="mesh", source_path=str(path), modality=modality or "",
                         metadata=meta, vertices=vertices, faces=faces)]


def _read_trimesh(path: Path):
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for bad files
        raise ReadError(path, f"cannot parse mesh ({type(exc).__name__}: {exc})") from exc
    vertices = np.asarray(getattr(loaded, "vertices", np.empty((0, 3))))
    faces = np.asarray(getattr(loaded, "faces", np.empty((0, 3))), dtype=np.int64)
    if len(vertices) == 0:
        # force="mesh" drops the vertices of a file without faces: count them as a point cloud,
        # so the message says what is missing (faces), not "no vertices".
        try:
            cloud = trimesh.load(str(path), process=False)
            vertices = np.asarray(getattr(cloud, "vertices", vertices))
        except Exception:  # noqa: BLE001
            pass
    return vertices, faces.reshape(-1, 3) if faces.size else np.empty((0, 3), np.int64)


def _read_pyvista(path: Path):
    import pyvista as pv

    try:
        data = pv.read(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ReadError(path, f"cannot parse VTK file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, pv.PolyData):
        try:
            data = data.extract_surface()
        except Exception as exc:  # noqa: BLE001
            raise ReadError(path, f"VTK dataset {type(data).__name__} has no surface ({exc})") from exc
    vertices = np.asarray(data.points)
    if data.n_cells == 0 or data.n_faces == 0:
        return vertices, np.empty((0, 3), np.int64)
    tri = data.triangulate()
    faces = np.asarray(tri.faces).reshape(-1, 4)
    faces = faces[faces[:, 0] == 3][:, 1:]
    return np.asarray(tri.points), faces
