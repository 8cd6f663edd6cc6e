"""Start-up time of the app: from a fresh Python process to the first painted main window
(and to the window's views filled: the first sample shown), on a small and a large project.

Each measurement is a new process (cold imports, as ``latentmap app`` pays them), under the
virtual screen when there is no display. Baseline measured in the same run: the same process
showing an empty ``QMainWindow`` (Qt start-up alone). Projects: the sample project (180 shapes,
built on first use) and OrganAMNIST training images stored as one array (N = 1,000 and the
all 58,830 images of train+val+test; no embedding, so the first map starts in the background).
Prints the CPU model and writes ``bench/results/app_startup.md``.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
REPEATS = int(os.environ.get("APP_STARTUP_REPEATS", "3"))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path as a script)

CHILD = r"""
import sys, time
t0 = time.perf_counter()
c0 = time.process_time()
sys.path.insert(0, {root!r})
from qtpy.QtCore import QTimer, QObject, QEvent
from qtpy.QtWidgets import QApplication, QMainWindow
app = QApplication([])
mode = {mode!r}
if mode == "empty":
    win = QMainWindow(); win.resize(1600, 1000)
else:
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    win = MainWindow(ProjectModel.open({project!r}))
    win._non_blocking_errors = True
    win.resize(1600, 1000)
marks = {{}}
class Paint(QObject):
    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Paint and "paint" not in marks:
            marks["paint"] = time.perf_counter() - t0
            marks["paint_cpu"] = time.process_time() - c0
        return False
f = Paint(); win.installEventFilter(f)
win.show()
def done():
    marks.setdefault("paint", time.perf_counter() - t0)
    marks.setdefault("paint_cpu", time.process_time() - c0)
    marks["idle"] = time.perf_counter() - t0
    print("RESULT", marks["paint"], marks["idle"], marks["paint_cpu"], flush=True)
    win.close(); app.quit()
QTimer.singleShot(0, lambda: QTimer.singleShot(0, done))
app.exec()
"""


def run_child(mode: str, project: str = "") -> tuple[float, float, float, float]:
    """(first paint s, event loop idle s, process CPU s to the first paint (user+sys, all
    threads; from the interpreter's start), load average at the start)."""
    load = os.getloadavg()[0]
    code = CHILD.format(root=str(ROOT), mode=mode, project=project)
    cmd = [sys.executable, "-c", code]
    if not os.environ.get("DISPLAY"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba")})
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            _, a, b, c = line.split()
            return float(a), float(b), float(c), load
    raise RuntimeError(f"start-up child failed:\n{out.stderr[-2000:]}")


def organ_project(folder: Path, n: int | None) -> Path:
    """OrganAMNIST as one project: the first ``n`` training images, or (``n`` None) every image
    of the train, val and test splits (58,830), each split stored as one array."""
    import numpy as np

    from core.project import Project, SampleRecord

    npz = np.load(DATA / "organamnist" / "organamnist.npz")
    splits = {"train": np.asarray(npz["train_images"][:n])} if n is not None else \
        {s: np.asarray(npz[f"{s}_images"]) for s in ("train", "val", "test")}
    total = sum(len(x) for x in splits.values())
    path = folder / f"organ-{total}"
    p = Project.create(path, name=f"organamnist {total}")
    for split, imgs in splits.items():
        rel = p.save_sample_array(f"data/{split}_images.npy", imgs)
        p.add_samples([SampleRecord(id=f"{split}/{i:05d}", dataset="organamnist", modality="CT", kind="image2d",
                                    split=split, shape=imgs.shape[1:], data_file=rel, data_index=i)
                       for i in range(len(imgs))])
    p.close()
    return path


def main() -> int:
    from core.sample_project import build_sample_project, default_location, is_complete

    print(f"CPU: {cpu_model()}; load average {os.getloadavg()}")
    sample = default_location() if is_complete(default_location()) else build_sample_project()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        projects = [("sample project (180 shapes)", str(sample))]
        if (DATA / "organamnist" / "organamnist.npz").exists():
            projects += [("OrganAMNIST 1,000 images", str(organ_project(Path(tmp), 1000))),
                         ("OrganAMNIST 58,830 images (train+val+test)", str(organ_project(Path(tmp), None)))]
        def median_of(runs):
            runs = sorted(runs, key=lambda r: r[0])
            return runs[len(runs) // 2]

        rows.append(("empty QMainWindow (baseline)", *median_of([run_child("empty") for _ in range(REPEATS)])))
        for name, path in projects:
            rows.append((name, *median_of([run_child("project", path) for _ in range(REPEATS)])))
            print(rows[-1], flush=True)
    lines = ["| start-up | first paint (s) | event loop idle (s) | CPU to first paint (s) | load avg |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {a:.2f} | {b:.2f} | {c:.2f} | {ld:.1f} |" for n, a, b, c, ld in rows]
    text = (f"CPU: {cpu_model()}; load average at start {os.getloadavg()[0]:.1f}; median of {REPEATS} "
            "fresh processes per row\n\n" + "\n".join(lines) + "\n"
            "\nCPU to first paint: the process's user+sys seconds (all threads) from the interpreter's start "
            "to the first paint; less sensitive than wall time to other work on the machine (see the load "
            "average). Built after the first paint: the image (napari) and mesh (VTK) views, the samples "
            "table's rows, the scatter's numba kernels, the training form (torch), the collapse check "
            "(scipy), the evaluation curves (matplotlib) and the first map (a background job).\n")
    print(text)
    out = ROOT / "bench" / "results" / "app_startup.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
