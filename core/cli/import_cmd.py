"""``latentmap import SOURCE... --project DIR``: files, folders and manifests into a project."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="import images, volumes, meshes, MedMNIST .npz or a manifest into a project",
        description="Import DICOM (series folders or files), NIfTI/NRRD/MHA volumes with label maps, "
                    "PNG/JPEG frames, STL/OBJ/PLY/VTK/VTP/OFF meshes, MedMNIST .npz files, or a "
                    "CSV/parquet manifest (path column, optional label/split/metadata columns). "
                    "The project is created if missing. Bad files are reported and skipped.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="file, folder or manifest")
    p.add_argument("--project", "-p", required=True, help="project folder (created if missing)")
    p.add_argument("--dataset", help="dataset name for every sample (default: per file/folder)")
    p.add_argument("--modality", help="modality for every sample (default: DICOM tag or file name)")
    p.add_argument("--no-points", action="store_true",
                   help="do not compute 1024-point clouds for imported masks and meshes")
    p.add_argument("--n-points", type=int, default=1024, help="points per shape (default 1024)")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    from tqdm import tqdm

    from ..io import ImportReport, import_steps
    from ..project import Project

    project = Project.open_or_create(args.project)
    report = ImportReport()
    bar = None
    try:
        for prog in import_steps(project, args.sources, dataset=args.dataset, modality=args.modality,
                                 report=report):
            if bar is None:
                bar = tqdm(total=prog.steps_per_epoch, desc="import", unit="file", file=sys.stderr,
                           dynamic_ncols=True)
            bar.update(1)
            bar.set_postfix({"samples": report.imported}, refresh=False)
    except KeyboardInterrupt:
        report.cancelled = True
    finally:
        if bar is not None:
            bar.close()
    print(f"project {project.path}: {project.count()} samples in total")
    for line in report.summary_lines():
        print(line)
    points_failed = 0
    if not args.no_points and not report.cancelled:
        points_failed = compute_shape_points(project, report.shape_ids(project), n_points=args.n_points)
    return 0 if report.imported or report.already or not report.skipped else 1


def compute_shape_points(project, ids, *, n_points: int) -> int:
    """Mask/mesh -> surface -> points for the new shape samples, with a progress bar.

    Returns the number of shapes that gave no points (each reported with its reason).
    """
    if not ids:
        return 0
    from tqdm import tqdm

    from ..preprocess.shapes import compute_points

    bar = tqdm(total=len(ids), desc="points", unit="shape", file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5)
    result = None
    gen = compute_points(project, ids=ids, n_points=n_points, seed=0)
    try:
        while True:
            prog = next(gen)
            target = min(len(ids), prog.global_step or prog.step or bar.n + 1)
            if target > bar.n:
                bar.update(target - bar.n)
    except StopIteration as stop:
        result = stop.value
    finally:
        bar.close()
    failed = _failures(result)
    print(f"points: {len(ids) - len(failed)} of {len(ids)} shapes sampled with {n_points} points")
    for sid, reason in failed:
        print(f"  {sid}: {reason}")
    return len(failed)


def _failures(result) -> list:
    """(id, reason) pairs from whatever compute_points returns (a report, dict or list)."""
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return [tuple(r) for r in result]
    for attr in ("failed", "skipped", "errors"):
        val = getattr(result, attr, None)
        if val is None and isinstance(result, dict):
            val = result.get(attr)
        if val:
            return list(val.items()) if isinstance(val, dict) else list(val)
    return []
