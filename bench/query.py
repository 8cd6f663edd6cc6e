"""Benchmark: a new case, from its file to its printed nearest known cases and predicted class.

Cases: (a) one new AdrenalMNIST3D 64^3 mask written as NIfTI; (b) the TotalSegmentator CT with
its label map, ``--structure liver`` (mesh and 1024 points of the liver). Each is timed
  * warm: the run already loaded in this process (``core.workflows.place.Placer``, as the app
    keeps it): import + derive + embed + place + kNN + store + print;
  * cold: a fresh ``latentmap query FILE --project P`` process (Python, torch, the checkpoint);
at 1,000 known cases (real AdrenalMNIST3D shapes embedded by a trained DeepDiffusion run: the
bundled sample project's 180 plus 820 from ../shared) and at 100,000 known cases, where the
other 99,000 rows of the kNN table are SYNTHETIC embedding rows (real rows resampled with
small Gaussian noise, ids ``synthetic/...``): only the embedding table is scaled, they are not
samples, have no labels and were not embedded from shapes.

Baseline in the same run (1,000 known cases): the path before ``query`` existed, as three
commands: ``latentmap import FILE`` + ``latentmap embed`` (re-embeds every known sample) +
``latentmap match``. At 100,000 known cases the baseline would re-embed 100,000 shapes; it is
not run, its time is extrapolated from the measured per-sample embed rate and marked so.

Every timed case uses a new file (a new sample id), so nothing is "already imported".
Usage: ``python bench/query.py [--base SAMPLE_PROJECT] [--repeats 3] [--cold-repeats 2]``
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
DATA = ROOT.parent / "shared" / "data"
ADRENAL = DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"
TS = DATA / "totalseg_example"
LATENTMAP = [str(Path(sys.executable).parent / "latentmap")]


def run_cli(args, *, quiet=True, detail: dict | None = None) -> float:
    """Wall seconds of a fresh ``latentmap ARGS`` process, start to exit. ``detail`` gets
    ``answer_s`` (start to the first line on stdout: ``query`` prints its whole answer at once,
    before it stores the new rows) and ``cpu_s`` (the child's user+sys CPU seconds, much less
    sensitive to other work on the machine than wall time)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(LATENTMAP + [str(a) for a in args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    first = proc.stdout.readline()
    answer = time.perf_counter() - t
    rest, err = proc.communicate()
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"latentmap {' '.join(map(str, args))} failed:\n{err[-2000:]}")
    if detail is not None:
        detail.update(answer_s=answer if first else dt, exit_s=dt,
                      cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return dt


# ------------------------------------------------------------------------------ setup
def build_known(base: Path, work: Path) -> Path:
    """1,000 known cases: the sample project's 180 shapes + 820 more, embedded by its run."""
    from core.project import Project
    from core.workflows.apply import apply_run
    from core.workflows.derive import import_and_derive
    from core.workflows.runs import load_run_method, pick_run

    dst = work / "known1k"
    shutil.copytree(base, dst)
    with np.load(ADRENAL, allow_pickle=False) as z:
        x = z["train_images"][300:1120]
        y = z["train_labels"][300:1120]
    np.savez(work / "adrenal_more.npz", train_images=x, train_labels=y)
    project = Project.open(dst)
    import_and_derive(project, [work / "adrenal_more.npz"])
    run = pick_run(project)
    apply_run(project, load_run_method(run, project), int(run["id"]))
    n = len(project.embedding(int(run["id"]))[0])
    project.close()
    print(f"known cases: {n} real shapes embedded by run {run['id']} ({run['method']})")
    return dst


def scale_to(src: Path, dst: Path, n_total: int) -> Path:
    """Copy ``src`` and pad the run's embedding with SYNTHETIC rows to ``n_total`` rows."""
    from core.project import Project

    shutil.copytree(src, dst)
    project = Project.open(dst)
    run = project.active_run_id
    ids, emb = project.embedding(run)
    rng = np.random.default_rng(0)
    extra = n_total - len(ids)
    rows = emb[rng.integers(0, len(emb), extra)]
    rows = rows + rng.normal(0, 0.05 * emb.std(0), rows.shape).astype(np.float32)
    project.save_embedding(run, np.concatenate([ids, [f"synthetic/{i:06d}" for i in range(extra)]]),
                           np.concatenate([emb, rows]))
    project.close()
    return dst


class Cases:
    """A new file per timed query, so each one is a new sample."""

    def __init__(self, work: Path):
        self.work = work
        self.i = 0
        with np.load(ADRENAL, allow_pickle=False) as z:
            self.masks = z["test_images"][200:260]

    def mask(self) -> list[str]:
        import SimpleITK as sitk

        self.i += 1
        path = self.work / "files" / f"new_mask_{self.i:03d}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(self.masks[self.i % len(self.masks)].astype(np.uint8)), str(path))
        return [str(path)]

    def ct(self) -> list[str]:
        self.i += 1
        folder = self.work / "files" / f"ct_{self.i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("example_ct_sm.nii.gz", "example_seg.nii.gz", "labels.json"):
            shutil.copy(TS / name, folder / name)
        return [str(folder / "example_ct_sm.nii.gz"), str(folder / "example_seg.nii.gz")]


def print_placements(placements) -> str:
    """What ``latentmap query`` prints (text), into a string."""
    from core.cli.query import fmt_distance

    buf = io.StringIO()
    with redirect_stdout(buf):
        for p in placements:
            print(p.id, "predicted:", p.prediction.describe())
            for n in p.neighbours:
                print(f"  {fmt_distance(n.distance)}  {n.id}  [{', '.join(n.labels) or 'unlabelled'}]")
    return buf.getvalue()


def warm_query(project, placer, files, structures) -> float:
    from core.workflows.derive import import_and_derive

    t = time.perf_counter()
    rep = import_and_derive(project, files, dataset="query", structures=structures)
    placements = placer.place(rep.sample_ids, k=8)
    text = print_placements(placements)
    dt = time.perf_counter() - t
    assert placements and placements[0].neighbours and text
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=None,
                    help="a complete sample project (default: the user's, built when missing)")
    ap.add_argument("--repeats", type=int, default=3, help="warm queries per case and size")
    ap.add_argument("--cold-repeats", type=int, default=2, help="cold queries per case and size")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "query")
    args = ap.parse_args(argv)

    import torch

    from core.project import Project
    from core.sample_project import build_sample_project, default_location
    from core.workflows.place import Placer

    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.1f} (other work on the machine inflates every figure)")
    base = args.base or build_sample_project(default_location())
    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    results = []
    try:
        known = build_known(Path(base), work)
        big = scale_to(known, work / "known100k", 100_000)
        cases = Cases(work)
        for label, path in (("1,000", known), ("100,000", big)):
            project = Project.open(path)
            clustering = project.active_clustering_name
            t = time.perf_counter()
            placer = Placer(project)
            _ = placer.method
            load_s = time.perf_counter() - t
            n_known = len(placer.ids)
            warm_query(project, placer, cases.mask(), [])       # first call: lazy imports, not timed
            for case, make, structures in (("64^3 mask", cases.mask, []),
                                           ("CT + label map, liver", cases.ct, ["liver"])):
                warm = [warm_query(project, placer, make(), structures) for _ in range(args.repeats)]
                cold, cold_detail = [], []
                for _ in range(args.cold_repeats):
                    files = make()
                    extra = sum((["--structure", s] for s in structures), [])
                    d = {"load_average": os.getloadavg()[0]}
                    cold.append(run_cli(["query", *files, "--project", path, *extra], detail=d))
                    cold_detail.append(d)
                row = {"known": n_known, "case": case, "warm_s": statistics.median(warm),
                       "warm_all_s": warm, "cold_s": statistics.median(cold), "cold_all_s": cold,
                       "cold_answer_s": statistics.median(d["answer_s"] for d in cold_detail),
                       "cold_cpu_s": statistics.median(d["cpu_s"] for d in cold_detail),
                       "cold_detail": cold_detail,
                       "run_load_s": load_s, "synthetic_rows": max(0, n_known - 1000) if label != "1,000" else 0,
                       "load_average": os.getloadavg()[0]}
                results.append(row)
                print(f"{label:>8} known ({n_known} rows{', 99,000 synthetic' if row['synthetic_rows'] else ''})"
                      f" | {case:<22} | warm {row['warm_s']:.2f} s (runs {', '.join(f'{x:.2f}' for x in warm)})"
                      f" | cold {row['cold_s']:.2f} s (runs {', '.join(f'{x:.2f}' for x in cold)};"
                      f" answer printed at {row['cold_answer_s']:.2f} s; CPU {row['cold_cpu_s']:.2f} s)"
                      f" | load avg {row['load_average']:.1f}", flush=True)
            project.close()

        # baseline: import + embed (re-embeds every known sample) + match, at 1,000 known cases
        project = Project.open(known)
        clustering = project.active_clustering_name
        n_real = len(project.embedding(project.active_run_id)[0])
        project.close()
        base_rows = []
        for case, make, structures in (("64^3 mask", cases.mask, []), ("CT + label map, liver", cases.ct, ["liver"])):
            files = make()
            extra = sum((["--structure", s] for s in structures), [])
            t_imp = run_cli(["import", *files, "--project", known, "--dataset", "query", *extra])
            t_emb = run_cli(["embed", "--project", known])
            t_match = run_cli(["match", "--project", known, "--clustering", clustering])
            total = t_imp + t_emb + t_match
            base_rows.append({"case": case, "import_s": t_imp, "embed_s": t_emb, "match_s": t_match,
                              "total_s": total, "embedded": n_real + 1})
            per_sample = t_emb / (n_real + 1)
            print(f"baseline 1,000 known | {case:<22} | import {t_imp:.1f} + embed {t_emb:.1f} + match {t_match:.1f}"
                  f" = {total:.1f} s; at 100,000 known (EXTRAPOLATED, not run): embed ~{per_sample * 1e5:.0f} s",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"# bench/query.py\n", f"CPU: {cpu_model()}; load average at the end {os.getloadavg()[0]:.1f}\n",
             "100,000 known cases = 1,000 real embedded shapes + 99,000 SYNTHETIC embedding rows "
             "(resampled real rows + noise; kNN table only).\n",
             "Cold: a fresh `latentmap query` process; *answer* = start to the printed answer (the new rows are "
             "stored after it), *exit* = start to the process's end, *CPU* = the process's user+sys seconds "
             "(little affected by other work on the machine; wall times are, see the load average).\n",
             "| known | case | warm (s) | cold: answer (s) | cold: exit (s) | cold: CPU (s) | goal warm/cold | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['known']:,} | {r['case']} | {r['warm_s']:.2f} | {r['cold_answer_s']:.2f} | "
                     f"{r['cold_s']:.2f} | {r['cold_cpu_s']:.2f} | 1 / 5 | {r['load_average']:.1f} |")
    lines += ["", "Baseline (same run): import + embed + match at 1,000 known cases", "",
              "| case | import (s) | embed (s) | match (s) | total (s) | ours warm / cold (s) |", "|---|---|---|---|---|---|"]
    for b in base_rows:
        ours = next(r for r in results if r["case"] == b["case"] and r["synthetic_rows"] == 0)
        lines.append(f"| {b['case']} | {b['import_s']:.1f} | {b['embed_s']:.1f} | {b['match_s']:.1f} | "
                     f"{b['total_s']:.1f} | {ours['warm_s']:.2f} / {ours['cold_s']:.2f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps({"cpu": cpu_model(), "results": results,
                                                       "baseline": base_rows}, indent=1))
    print(f"results: {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
