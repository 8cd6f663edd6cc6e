"""Shapes: mask -> largest connected component -> surface mesh -> 1024 surface points.

The inner-ear DeepDiffusion pipeline turns each segmentation into a point cloud this way:
keep the largest connected component, extract its surface, sample 1024 points uniformly over
the surface area (Ohbuchi: a face is drawn with probability proportional to its area, then a
uniform point inside it), and normalise the cloud to its centroid and the unit sphere.

Conventions: a mask is a 3-D array, foreground where it is true / non-zero (float masks:
where > 0.5, so probability maps work); ``spacing`` is
given in the array's axis order (the same order as ``mask.shape``), and vertices are in that
order too (index * spacing, index 0 at coordinate 0), so a mesh overlays its mask.
"""
from __future__ import annotations

import time
from typing import Iterator, Sequence

import numpy as np

from .augment import augment_points, augment_points_torch  # noqa: F401  (re-exported API)

__all__ = [
    "mask_to_mesh", "sample_surface", "normalise_points", "mask_to_points", "compute_points",
    "largest_component", "face_areas", "augment_points", "augment_points_torch",
]

# 26-connectivity: thin vessels (VesselMNIST3D) often step diagonally between voxels; face
# connectivity would cut them into pieces and keep only one.
_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def _binary(mask, name: str | None) -> np.ndarray:
    m = np.asarray(mask)
    label = f"mask {name!r}" if name else "mask"
    if m.ndim != 3:
        raise ValueError(f"{label}: expected a 3-D mask, got shape {m.shape}")
    if m.dtype != bool:
        m = m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0
    if not m.any():
        raise ValueError(f"{label} is empty (no foreground voxel): cannot make a surface from it")
    return m


def largest_component(mask, *, connectivity: int = 3) -> np.ndarray:
    """The largest connected component of a binary mask (26-connected by default; ties: the
    component met first in C order, as ``scipy.ndimage.label`` numbers them)."""
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim in (2, 3) and connectivity in (1, m.ndim):
        # SimpleITK's labelling numbers components in the same raster order as scipy's, and
        # every volume reader has it loaded: importing scipy.ndimage would add ~0.6 s to a cold
        # ``latentmap query``
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(m.astype(np.uint8))
        labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(img, connectivity == m.ndim))
    else:
        from scipy import ndimage as ndi

        labels, _ = ndi.label(m, structure=ndi.generate_binary_structure(m.ndim, connectivity))
    sizes = np.bincount(labels.ravel())
    if len(sizes) <= 2:               # no or one component
        return m.copy()
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _flying_edges(volume: np.ndarray):
    """VTK flying edges on a uint8 volume at level 0.5; vertices in array index order."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    vol = np.ascontiguousarray(volume, dtype=np.uint8)
    img = vtkImageData()
    # VTK's x runs fastest, i.e. along the last numpy axis of a C-ordered array.
    img.SetDimensions(*vol.shape[::-1])
    img.GetPointData().SetScalars(numpy_to_vtk(vol.ravel(), deep=True))
    fe = vtkFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, 0.5)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    out = fe.GetOutput()
    if out.GetNumberOfPoints() == 0 or out.GetNumberOfPolys() == 0:
        return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64)
    verts = vtk_to_numpy(out.GetPoints().GetData()).astype(np.float64)[:, ::-1]
    faces = vtk_to_numpy(out.GetPolys().GetConnectivityArray()).astype(np.int64).reshape(-1, 3)
    return verts, faces


def _marching_cubes(volume: np.ndarray):
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(volume.astype(np.float32), 0.5)
    return verts.astype(np.float64), faces.astype(np.int64)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # np.cross validates and broadcasts generically; this is ~3x faster for N x 3 rows.
    return np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
                     u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                     u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, _cross(b, c)).sum() / 6.0)


def _bounding_box(m: np.ndarray) -> tuple[slice, ...]:
    # Projections per axis: cheaper than ndimage.find_objects on a mostly empty volume.
    box = []
    for axis in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != axis)
        nz = np.flatnonzero(m.any(axis=other))
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)


def mask_to_mesh(mask, spacing: Sequence[float] = (1, 1, 1), *, largest_component: bool = True,
                 name: str | None = None, backend: str = "vtk"):
    """Closed triangle surface of a binary mask -> ``(vertices float32 Vx3, faces int64 Fx3)``.

    The mask is cropped to its bounding box and padded by one empty voxel so the surface closes
    even where the object touches the volume border. Faces are wound with outward normals.
    ``backend``: "vtk" (flying edges, about 3x faster) or "skimage" (marching cubes); VTK is
    used when importable. ``name`` only makes error messages say which sample failed.
    """
    m = _binary(mask, name)
    if len(spacing) != 3:
        raise ValueError(f"spacing must have 3 values (one per mask axis), got {spacing!r}")
    spacing = np.asarray(spacing, dtype=np.float64)
    if np.any(spacing <= 0):
        raise ValueError(f"spacing must be positive, got {spacing.tolist()}")
    box = _bounding_box(m)
    m = m[box]
    if largest_component:
        m = _lcc_cropped(m)
    vol = np.pad(m, 1).astype(np.uint8)
    verts = faces = None
    if backend == "vtk":
        try:
            verts, faces = _flying_edges(vol)
        except ImportError:
            backend = "skimage"
    if backend == "skimage":
        verts, faces = _marching_cubes(vol)
    elif verts is None:
        raise ValueError(f"unknown mesh backend {backend!r}: use 'vtk' or 'skimage'")
    if len(faces) == 0:
        label = f"mask {name!r}" if name else "mask"
        raise ValueError(f"{label}: surface extraction produced no faces")
    # Undo the crop and the padding, then go to physical units.
    offset = np.array([s.start for s in box], dtype=np.float64) - 1.0
    verts = (verts + offset) * spacing
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1]
    return verts.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)


def _lcc_cropped(m: np.ndarray) -> np.ndarray:
    lcc = largest_component(m)
    box = _bounding_box(lcc)
    out = np.zeros_like(m)
    out[box] = lcc[box]
    return out


def face_areas(vertices, faces) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return 0.5 * np.sqrt((_cross(b - a, c - a) ** 2).sum(axis=1))


def _check_mesh(vertices, faces, name: str | None):
    label = f"mesh {name!r}" if name else "mesh"
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{label}: vertices must be V x 3, got shape {v.shape}")
    if f.size == 0:
        raise ValueError(f"{label} has no faces: cannot sample points on its surface")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{label}: faces must be F x 3 triangles, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{label}: faces must hold integer vertex indices, got {f.dtype}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{label}: a face refers to vertex {int(f.max())}, but there are {len(v)}")
    if not np.isfinite(v).all():
        raise ValueError(f"{label}: vertices contain NaN or infinity")
    return v, f.astype(np.int64, copy=False)


def sample_surface(vertices, faces, n_points: int = 1024, *, seed=0, name: str | None = None):
    """``n_points`` uniform random points on a triangle mesh's surface (float32 n x 3).

    Ohbuchi / Osada sampling: a face is drawn (with replacement) with probability proportional
    to its area, then a point is placed uniformly in it with barycentric coordinates
    ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)``. ``seed`` is an int or a numpy Generator.
    Any mesh with a non-zero area gives ``n_points`` points, however few faces it has.
    """
    v, f = _check_mesh(vertices, faces, name)
    if int(n_points) < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    areas = face_areas(v, f)
    cum = np.cumsum(areas)
    total = cum[-1]
    if not total > 0:
        label = f"mesh {name!r}" if name else "mesh"
        raise ValueError(f"{label}: every face has zero area; there is no surface to sample")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    u = rng.random((3, int(n_points)))
    # Inverse-CDF face choice (what rng.choice(p=areas/total) does, without the re-validation).
    idx = np.minimum(np.searchsorted(cum, u[0] * total, side="right"), len(f) - 1)
    s = np.sqrt(u[1])[:, None]
    r2 = u[2][:, None]
    tri = f[idx]
    pts = (1.0 - s) * v[tri[:, 0]] + s * (1.0 - r2) * v[tri[:, 1]] + s * r2 * v[tri[:, 2]]
    return pts.astype(np.float32)


def normalise_points(points) -> np.ndarray:
    """Centre on the centroid and scale into the unit sphere (largest radius exactly 1).

    Works on one cloud (P x 3) or a batch (B x P x 3), each cloud normalised on its own.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim < 2 or p.shape[-1] != 3 or p.shape[-2] == 0:
        raise ValueError(f"points must be (..., P, 3) with P >= 1, got shape {p.shape}")
    p = p - p.mean(axis=-2, keepdims=True)
    r = np.linalg.norm(p, axis=-1).max(axis=-1, keepdims=True)[..., None]
    if np.any(r <= 0):
        raise ValueError("cannot normalise a point cloud whose points all coincide")
    return (p / r).astype(np.float32)


def mask_to_points(mask, n_points: int = 1024, *, seed=0, spacing: Sequence[float] = (1, 1, 1),
                   name: str | None = None) -> np.ndarray:
    """mask -> largest component -> surface -> ``n_points`` area-weighted points -> unit sphere."""
    verts, faces = mask_to_mesh(mask, spacing, name=name)
    return normalise_points(sample_surface(verts, faces, n_points, seed=seed, name=name))


# ---------------------------------------------------------------------------- project pipeline
def _array_spacing(geometry) -> tuple[float, float, float]:
    """Spacing in array axis order from a sample's geometry record (1 per voxel when unknown).

    The importer keeps ITK's physical ``(x, y, z)`` order in ``spacing`` and the array-axis
    ``(z, y, x)`` order in ``array_spacing``; arrays are stored in the latter.
    """
    if not isinstance(geometry, dict):
        return (1.0, 1.0, 1.0)
    sp = geometry.get("array_spacing")
    if sp is None and geometry.get("spacing") is not None:
        sp = list(geometry["spacing"])[::-1]
    if sp is None or len(sp) != 3:
        return (1.0, 1.0, 1.0)
    return tuple(float(s) for s in sp)


def _sample_seed(seed: int, sample_id: str) -> np.random.Generator:
    # A per-sample stream: a sample's points do not change when other samples are added.
    import zlib

    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(sample_id.encode())])


def _shape_rows(project, ids) -> list[tuple]:
    """``(id, kind, geometry, metadata, has label map)`` of the samples ``ids`` (in that order,
    each once, unknown ones left out) or of every sample: only those rows are read, without
    pandas (a cold ``latentmap query`` does not import it)."""
    return [(r["id"], r["kind"], r["geometry"], r["metadata"], r["mask_file"] is not None)
            for r in project.sample_rows(ids)]


def compute_points(project, ids=None, n_points: int = 1024, seed: int = 0, *,
                   save_meshes: bool = True, label: int | None = None) -> Iterator:
    """Generator: points for every 'mask' and 'mesh' sample of a project.

    Yields one ``core.jobs.Progress`` per sample (its ``message`` names the sample, or why it
    failed), saves each mask's mesh as ``meshes/<id>`` (``data`` = vertices, ``faces``), and at
    the end writes the ``points`` array (N x n_points x 3, with ids). When ``points`` already
    exists with the same ``n_points``, rows of samples not recomputed are kept. A sample that
    fails is skipped and reported; the generator's return value is the list of
    ``(id, reason)`` failures, also summarised in the last Progress message. Closing the
    generator early (a cancelled job) still writes the points computed so far.

    ``label``: use only this label id of each mask (multi-label maps), and also take the
    label maps attached to 'volume' samples (e.g. an organ of a CT's segmentation).
    """
    from ..jobs import Progress, RateMeter
    from ..project.faults import ProjectWriteError

    failures: list[tuple[str, str]] = []
    if ids is not None:
        ids = [str(i) for i in ids]
    rows = _shape_rows(project, ids)
    if ids is not None:
        known = {r[0] for r in rows}
        failures += [(i, "no such sample in the project") for i in ids if i not in known]

    # 'structure' samples are one label of a scan's label map (metadata 'label_value')
    def usable(kind, has_mask):
        return kind in ("mask", "mesh", "structure") or (label is not None and kind == "volume" and has_mask)

    if ids is not None:
        for sid, kind, _, _, has_mask in rows:
            if not usable(kind, has_mask):
                why = "a volume without a label map" if kind == "volume" else f"kind {kind!r}"
                failures.append((sid, f"{why} is not a mask or a mesh"
                                 + ("" if label is not None or kind != "volume"
                                    else " (pass label= to mesh a volume's label map)")))
    rows = [r for r in rows if usable(r[1], r[4])]
    n = len(rows)
    meter = RateMeter(total_steps=n)
    done_ids: list[str] = []
    done_pts: list[np.ndarray] = []
    t0 = time.perf_counter()
    saved = False
    try:
        for i, (sid, kind, geometry, meta, _) in enumerate(rows):
            try:
                if kind == "structure":
                    value = (meta or {}).get("label_value")
                    if value is None:
                        raise ValueError(f"structure {sid!r} names no label value")
                    mask = np.asarray(project.load_sample_array(sid, mask=True)) == int(value)
                    verts, faces = mask_to_mesh(mask, _array_spacing(geometry), name=sid)
                    if save_meshes:
                        project.arrays.save(f"meshes/{sid}", verts, faces=faces, durable=False)
                elif kind == "mesh":
                    mesh = project.arrays.load_extra(f"meshes/{sid}")
                    if "faces" not in mesh:
                        raise ValueError(f"mesh {sid!r}: stored mesh has no 'faces' array")
                    verts, faces = mesh["data"], mesh["faces"]
                else:
                    mask = project.load_sample_array(sid, mask=kind == "volume")
                    if label is not None:
                        mask = np.asarray(mask) == int(label)
                    verts, faces = mask_to_mesh(mask, _array_spacing(geometry), name=sid)
                    if save_meshes:
                        project.arrays.save(f"meshes/{sid}", verts, faces=faces, durable=False)
                pts = normalise_points(sample_surface(verts, faces, n_points,
                                                      seed=_sample_seed(seed, sid), name=sid))
                done_ids.append(sid)
                done_pts.append(pts)
                msg = sid
            except ProjectWriteError:
                raise                 # a full disk or a read-only project stops every sample
            except Exception as exc:  # one bad sample must not stop the others
                reason = str(exc) or type(exc).__name__
                failures.append((sid, reason))
                msg = f"{sid} skipped: {reason}"
            rate, eta = meter.update(1)
            yield Progress(epoch=0, step=i + 1, global_step=i + 1, n_epochs=1, steps_per_epoch=n,
                           samples_per_s=rate, eta_s=eta, message=msg)
        if done_ids:
            _save_points(project, done_ids, np.stack(done_pts), n_points)
        saved = True
    finally:
        if not saved and done_ids:  # closed early: keep what was computed
            _save_points(project, done_ids, np.stack(done_pts), n_points)

    summary = (f"points: {len(done_ids)} samples -> {n_points} points each in "
               f"{time.perf_counter() - t0:.1f} s; {len(failures)} skipped")
    if failures:
        summary += ": " + "; ".join(f"{s}: {r}" for s, r in failures[:20])
        if len(failures) > 20:
            summary += f"; ... ({len(failures) - 20} more)"
    yield Progress(epoch=0, step=n, global_step=n, n_epochs=1, steps_per_epoch=max(n, 1),
                   samples_per_s=meter.samples / max(time.perf_counter() - t0, 1e-9), eta_s=0.0,
                   metrics={"n_points_samples": len(done_ids), "n_failed": len(failures)},
                   message=summary)
    return failures


def _save_points(project, ids: list[str], pts: np.ndarray, n_points: int) -> None:
    if project.arrays.exists("points"):
        old_ids, old = project.arrays.load("points")
        if old_ids is not None and old.ndim == 3 and old.shape[1] == n_points:
            new = set(ids)
            keep = [i for i, s in enumerate(old_ids) if str(s) not in new]
            if keep:
                ids = [str(old_ids[i]) for i in keep] + list(ids)
                pts = np.concatenate([old[keep].astype(np.float32), pts])
    project.arrays.save("points", pts.astype(np.float32), ids=ids)
