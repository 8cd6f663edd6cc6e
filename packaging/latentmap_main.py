"""Entry point of the frozen (PyInstaller) LatentMap bundle: the ``latentmap`` command.

Same sub-commands as the pip-installed ``latentmap`` (``app``, ``import``, ``train`` ...). Before
anything heavy is imported it points every per-user cache at the user's own folders, so the
bundle never writes into its install folder (``/opt/latentmap`` is read-only for users):

* numba's compile cache: per user. A frozen app's code objects carry relative file names, so
  numba uses its user-wide locator (``~/.cache/numba``, keyed by this executable); NUMBA_CACHE_DIR
  (set here to ``~/.cache/latentmap/numba``) is what a checkout run from its folder uses.
* matplotlib's font cache -> ``$XDG_CACHE_HOME/latentmap/matplotlib``
* no ``__pycache__`` next to the source files shipped for numba and torch.

The sample project is built in ``$XDG_DATA_HOME/latentmap`` by ``app.main`` (unchanged).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "latentmap"


def prepare_environment() -> None:
    sys.dont_write_bytecode = True
    cache = _user_cache()
    for var, sub in (("NUMBA_CACHE_DIR", "numba"), ("MPLCONFIGDIR", "matplotlib")):
        if not os.environ.get(var):
            path = cache / sub
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # an unwritable HOME: run without the cache, say so once
                sys.stderr.write(f"latentmap: cannot create {path}: {exc}\n")
                continue
            os.environ[var] = str(path)
    # Qt finds its plugins inside the bundle (PyInstaller's runtime hook); a desktop session's
    # QT_PLUGIN_PATH pointing at the system Qt would load incompatible plugins.
    os.environ.pop("QT_PLUGIN_PATH", None)


def first_start_args(argv: list[str]) -> list[str]:
    """``latentmap app`` with no project (the menu entry) opens the sample project on the first
    start, building it in the user's data folder; later starts open the empty window as usual.
    With no command at all, the bundle behaves like ``latentmap app``."""
    if not argv:
        argv = ["app"]
    if argv[0] != "app":
        return argv
    import contextlib
    import io

    from core.cli import build_parser

    try:  # the real parse (in core.cli.main) reports any error; here only the outcome counts
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        return argv
    if args.project is None and not args.sample:
        from app.main import sample_project_path
        from core.sample_project import is_complete

        if not is_complete(sample_project_path()):
            argv = argv + ["--sample"]
    return argv


def report_first_window() -> None:
    """With LATENTMAP_PRINT_FIRST_WINDOW set (the smoke test), print the wall-clock time at which
    the main window has been shown and the event loop has run once: ``first window at T``."""
    import time

    from qtpy.QtCore import QTimer

    from app._qt import main_window

    show = main_window.MainWindow.show

    def show_and_report(self):
        show(self)
        QTimer.singleShot(0, lambda: print(f"latentmap: first window at {time.time():.3f}", flush=True))

    main_window.MainWindow.show = show_and_report


def bundle_check() -> int:
    """``latentmap bundle-check`` (packaging only, for the smoke test): the native libraries that
    the app start, import and training do not reach, each exercised once (the bundle's libraries
    are stripped by packaging/strip_bundle.py): NIfTI through SimpleITK, VTK and PLY meshes
    (VTK, trimesh), a parquet table (pyarrow), torch's autograd, a numba kernel, DICOM tags."""
    import tempfile

    import numpy as np

    done = []
    with tempfile.TemporaryDirectory(prefix="latentmap-check-") as tmp:
        tmp = Path(tmp)
        import SimpleITK as sitk

        from core.io.volumes import read_volume

        sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)),
                        str(tmp / "v.nii.gz"))
        (vol,) = read_volume(tmp / "v.nii.gz")
        assert vol.array.shape == (3, 4, 5) and int(vol.array[2, 3, 4]) == 59, vol.array.shape
        done.append("NIfTI (SimpleITK)")

        import pyvista as pv
        import trimesh

        from core.io.meshes import read_mesh

        pv.Sphere(theta_resolution=8, phi_resolution=8).save(str(tmp / "s.vtk"))
        trimesh.creation.icosphere(subdivisions=1).export(str(tmp / "s.ply"))
        (vtk_mesh,) = read_mesh(tmp / "s.vtk")
        (ply_mesh,) = read_mesh(tmp / "s.ply")
        assert vtk_mesh.faces.shape[1] == 3 and ply_mesh.vertices.shape == (42, 3)
        done.append("meshes (VTK, PLY)")

        import pandas as pd

        from core.export import write_table

        df = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
        back = pd.read_parquet(write_table(df, tmp / "t.parquet"))
        assert back.equals(df), back
        done.append("parquet (pyarrow)")

    import torch

    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    torch.nn.Conv2d(1, 2, 3)(x).square().sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    done.append(f"torch {torch.__version__}")

    import numba

    @numba.njit
    def _sum(a):
        s = 0.0
        for v in a:
            s += v
        return s

    assert _sum(np.arange(4.0)) == 6.0
    done.append(f"numba {numba.__version__}")

    import pydicom  # noqa: F401 - DICOM import reads tags through it

    done.append("pydicom")
    print("latentmap bundle-check: ok: " + ", ".join(done), flush=True)
    return 0


def main() -> int:
    multiprocessing.freeze_support()
    prepare_environment()
    sys.argv[0] = "latentmap"
    if sys.argv[1:2] == ["bundle-check"]:
        return bundle_check()
    argv = first_start_args(sys.argv[1:])
    if argv[0] == "app" and os.environ.get("LATENTMAP_PRINT_FIRST_WINDOW"):
        report_first_window()
    from core.cli import main as cli_main

    return cli_main(argv)


def run_and_exit() -> None:
    """Run the command, then leave without tearing the interpreter down module by module.

    In the frozen bundle, clearing torch's modules at interpreter shutdown crashed (SIGSEGV in
    ``type_dealloc`` of torch's static autograd types, after the command had finished and the
    window had closed). The command's own clean-up is done by then; ``atexit`` handlers still run
    and the streams are flushed, only the module teardown is skipped.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse errors, --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 - print the traceback as Python would, then exit 1
        sys.excepthook(*sys.exc_info())
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(int(code or 0))


if __name__ == "__main__":
    run_and_exit()
