"""Benchmark: import and mask -> mesh -> points throughput on AdrenalMNIST3D 64^3.

(a) import of ``adrenalmnist3d_64.npz`` (1584 masks) into a fresh project with ``core.io``;
(b) mask -> largest component -> surface -> 1024 area-weighted points -> unit sphere on a subset
    of masks held in memory: ``core.preprocess.shapes.mask_to_points`` (VTK flying edges on the
    cropped mask, vectorised sampling) next to a naive baseline doing the same steps with
    scikit-image marching cubes on the whole volume and ``trimesh.sample.sample_surface``;
(c) the project pipeline ``compute_points`` on the same subset (reads the masks from the
    project, saves every mesh, writes the ``points`` array).

Timings are the best of ``--rounds`` alternating rounds (the machine may be shared).
Usage: ``python bench/import_pipeline.py [--n 300] [--rounds 3] [--data PATH]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "adrenalmnist3d" / "adrenalmnist3d_64.npz"


def naive_mask_to_points(mask, n_points=1024, seed=0):
    """The straightforward way: label the whole volume, marching cubes on it, trimesh sampling."""
    import trimesh
    from scipy import ndimage as ndi
    from skimage.measure import marching_cubes

    m = mask > 0
    lab, n = ndi.label(m, structure=np.ones((3, 3, 3)))
    if n > 1:
        m = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    verts, faces, _, _ = marching_cubes(np.pad(m, 1).astype(np.float32), 0.5)
    mesh = trimesh.Trimesh(verts, faces)
    pts, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    pts = pts - pts.mean(0)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float32)


def timed(fn, rounds_log: list):
    t = time.perf_counter()
    out = fn()
    rounds_log.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=300, help="masks in the mesh/points subset")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"data not found: {args.data}")
        return 1

    from core.jobs.steps import run_to_end
    from core.preprocess.shapes import compute_points, mask_to_points
    from core.project import Project

    with np.load(args.data, allow_pickle=False) as z:
        masks = z["train_images"][: args.n]
    n = len(masks)
    print(f"AdrenalMNIST3D 64^3: {args.data}")
    print(f"mesh/points subset: first {n} train masks (of 1584 samples), best of {args.rounds} rounds")

    # Warm up imports and caches (VTK, scikit-image, trimesh) outside the timings.
    mask_to_points(masks[0])
    naive_mask_to_points(masks[0])

    t_ours, t_naive, t_import, t_project, t_nosave = [], [], [], [], []
    ours = naive = None
    with tempfile.TemporaryDirectory(prefix="latentmap-bench-") as tmp:
        try:
            from core.io.importer import import_source
        except ImportError as exc:  # the importer is another module; time (b) alone without it
            import_source = None
            print(f"(a) import: skipped, core.io importer not importable ({exc})")
        for r in range(args.rounds):
            ours = timed(lambda: [mask_to_points(m, seed=0) for m in masks], t_ours)
            naive = timed(lambda: [naive_mask_to_points(m, seed=0) for m in masks], t_naive)
            if import_source is not None:
                proj = Project.create(Path(tmp) / f"p{r}")
                report = timed(lambda: import_source(proj, args.data), t_import)
                ids = proj.samples(split="train")["id"].tolist()[:n]
                failures = timed(lambda: run_to_end(compute_points(proj, ids=ids)), t_project)
                assert not failures, failures
                timed(lambda: run_to_end(compute_points(proj, ids=ids, save_meshes=False)), t_nosave)
                proj.close()

    rate = lambda count, ts: count / min(ts)  # noqa: E731
    if import_source is not None:
        print(f"(a) import npz -> fresh project: {report.imported} samples in {min(t_import):.2f} s"
              f" = {rate(report.imported, t_import):8.1f} samples/s")
    r_ours, r_naive = rate(n, t_ours), rate(n, t_naive)
    print(f"(b) mask -> mesh -> 1024 points, ours  (VTK flying edges on the crop, numpy sampling):"
          f" {r_ours:8.1f} samples/s ({1000 * min(t_ours) / n:.2f} ms/sample)")
    print(f"    naive baseline (skimage marching cubes + trimesh.sample.sample_surface):     "
          f" {r_naive:8.1f} samples/s ({1000 * min(t_naive) / n:.2f} ms/sample)")
    print(f"    speed-up ours / naive: {r_ours / r_naive:.2f}x")
    if t_project:
        print(f"(c) compute_points on the project (read masks, save meshes, write points):"
              f" {rate(n, t_project):8.1f} samples/s;"
              f" without saving meshes {rate(n, t_nosave):.1f} samples/s")

    # Same result up to sampling noise: mean distance of each cloud to the other one.
    from scipy.spatial import cKDTree

    gaps = [np.mean(cKDTree(b).query(a)[0]) for a, b in zip(ours[:50], naive[:50])]
    print(f"check: mean nearest-point distance ours -> naive (unit sphere) {np.mean(gaps):.4f}"
          f" (sampling noise alone is about the mean point spacing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
