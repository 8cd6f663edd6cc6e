"""``latentmap import SOURCE... --project DIR [--structure NAME|VALUE ...]``: files, folders and
manifests into a project, then the meshes and point clouds of the new shapes
(``core.workflows.derive``)."""
from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="import images, volumes, meshes, MedMNIST .npz or a manifest into a project",
        description="Import DICOM (series folders or files), NIfTI/NRRD/MHA volumes with label maps, "
                    "PNG/JPEG frames, STL/OBJ/PLY/VTK/VTP/OFF meshes, MedMNIST .npz files, or a "
                    "CSV/parquet manifest (path column, optional label/split/metadata columns). "
                    "The project is created if missing. Bad files are reported and skipped. "
                    "--structure makes one sample per chosen structure of a scan's label map "
                    "(<scan>/<structure>), with its own mesh and points.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="file, folder or manifest")
    p.add_argument("--project", "-p", required=True, help="project folder (created if missing)")
    p.add_argument("--dataset", help="dataset name for every sample (default: per file/folder)")
    p.add_argument("--modality", help="modality for every sample (default: DICOM tag or file name)")
    p.add_argument("--structure", action="append", default=[], metavar="NAME|VALUE",
                   help="a structure of the label maps (name from the map's label table, e.g. liver, "
                        "or a label value) to make into its own sample; repeatable")
    p.add_argument("--no-points", action="store_true",
                   help="do not compute 1024-point clouds for imported masks and meshes")
    p.add_argument("--n-points", type=int, default=None,
                   help="points per shape (default: as the project's point clouds, else 1024)")
    p.add_argument("--keep-identifiers", action="store_true",
                   help="keep DICOM patient and study identifiers (PatientID, name, sex, age, birth "
                        "and study dates, UIDs, institution) in the sample metadata; by default only "
                        "what describes the image is kept (modality, spacing, manufacturer, ...)")
    p.add_argument("--first-map", action="store_true",
                   help="then make the project's first map when it has none: PCA of pixels/voxels, "
                        "or the untrained PointNet for shapes (no training), so `latentmap query`, "
                        "`cluster` and `match` work at once (the app makes it by itself)")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    from ..project import Project

    created = not Path(args.project).expanduser().exists()  # made here: removed again if nothing came in
    project = Project.open_or_create(args.project)
    try:
        rc = _import_into(project, args)
    except BaseException:
        _remove_if_empty(project, created)
        raise
    if _remove_if_empty(project, created):
        print(f"nothing was imported: {project.path} was not created")
    return rc


def _remove_if_empty(project, created: bool) -> bool:
    """Delete a project folder this command created when no sample was imported into it."""
    import shutil

    try:
        if not created or project.count() > 0:
            return False
        path = project.path
        project.close()
        shutil.rmtree(path, ignore_errors=True)
        return True
    except Exception:  # noqa: BLE001 - the import's own outcome matters more
        return False


def _import_into(project, args) -> int:
    from tqdm import tqdm

    from ..project import ProjectWriteError
    from ..workflows.derive import DeriveReport, import_and_derive_steps

    report = DeriveReport()
    bars: dict = {}
    cancelled = False
    gen = import_and_derive_steps(project, args.sources, dataset=args.dataset, modality=args.modality,
                                  structures=args.structure, points=not args.no_points,
                                  n_points=args.n_points, report=report,
                                  keep_identifiers=args.keep_identifiers)
    try:
        for prog in gen:
            stage = "points" if report.points_ids else "import"
            bar = bars.get(stage)
            if bar is None:
                for other in bars.values():
                    other.close()
                total = len(report.points_ids) if stage == "points" else prog.steps_per_epoch
                bar = bars[stage] = tqdm(total=total, desc=stage, unit="shape" if stage == "points" else "file",
                                         file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
            target = min(bar.total or 0, prog.global_step or prog.step or bar.n + 1)
            if target > bar.n:
                bar.update(target - bar.n)
    except KeyboardInterrupt:
        gen.close()
        cancelled = True
        if report.import_report is not None:
            report.import_report.cancelled = True
    except ProjectWriteError:
        for bar in bars.values():
            bar.close()
        bars.clear()
        if report.import_report is not None:   # what was committed before the disk filled
            for line in report.lines():
                print(line)
        raise                                   # -> "latentmap import: error: disk full: <path> ..."
    finally:
        for bar in bars.values():
            bar.close()
    print(f"project {project.path}: {project.count()} samples in total")
    for line in report.lines():
        print(line)
    ir = report.import_report
    if cancelled:
        return 130
    if getattr(args, "first_map", False):
        _first_map(project)
    ok = ir.imported or ir.already or not ir.skipped
    return 0 if ok and not report.structure_errors else 1


def _first_map(project) -> None:
    from ..workflows.baseline import baseline_steps, has_baseline

    if has_baseline(project):
        print("first map: the project has one already")
        return
    last = None
    for prog in baseline_steps(project):
        last = prog.message
    if last:
        print(last)
