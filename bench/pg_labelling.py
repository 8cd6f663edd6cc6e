"""Load test: 8 annotators labelling one project at once, on PostgreSQL and, as the baseline in
the same run, on SQLite (one file, WAL).

Each writer is its own process with its own connection (as each annotator's app is) and, for a
bounded time, toggles one of 3 labels on a random BreastMNIST sample (a label edit: one
transaction and one history row). Reported: edits per second over all writers, median and p95
latency of one edit, and the final check that every acknowledged edit is in the history and
that replaying the history gives the labels.

The PostgreSQL server is a throw-away cluster on a loopback port (``tests/pg_cluster.py``:
initdb + pg_ctl, fsync off as in the tests; a production server with fsync on commits slower).
Usage: ``python bench/pg_labelling.py [--writers 8] [--seconds 15]``; results go to
``bench/results/pg_labelling/``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
DATA = ROOT.parent / "shared" / "data" / "breastmnist" / "breastmnist.npz"
LABELS = ["reviewed", "artefact", "uncertain"]


def writer(location: str, k: int, seconds: float, ready, go, out) -> None:
    from core.project import Project

    rng = np.random.default_rng(k)
    lat, changed = [], 0
    with Project.open(location) as p:
        ids = p.sample_ids()
        ready.put(k)
        go.wait(600)
        end = time.time() + seconds
        while time.time() < end:
            sid = ids[rng.integers(len(ids))]
            label = LABELS[rng.integers(len(LABELS))]
            t0 = time.perf_counter()
            n = p.set_label([sid], label, bool(rng.integers(2)), author=f"annotator{k}")
            lat.append(time.perf_counter() - t0)
            changed += n > 0
    out.put((k, lat, changed))


def replay(p) -> dict:
    state = {s: set() for s in p.sample_ids()}
    for _, row in p.history().iterrows():
        if row["kind"] != "label" or row["undone"]:
            continue
        payload = json.loads(row["payload"])
        for sid, _old, new in payload["changes"]:
            (state[sid].add if new else state[sid].discard)(payload["label"])
    return {s: sorted(v) for s, v in state.items()}


def run(location: str, writers: int, seconds: float) -> dict:
    from core.project import Project

    ctx = mp.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(location, k, seconds, ready, go, q)) for k in range(writers)]
    for pr in procs:
        pr.start()
    for _ in procs:                    # every writer connected before the clock starts
        ready.get(timeout=600)
    go.set()
    results = [q.get(timeout=seconds + 300) for _ in procs]
    for pr in procs:
        pr.join(60)
    lat = np.concatenate([np.asarray(r[1]) for r in results])
    changed = sum(r[2] for r in results)
    with Project.open(location) as p:
        hist = p.history()
        ok_count = int((hist["kind"] == "label").sum()) == changed
        # the edited labels (the imported class labels are not edits, so not in the history)
        now = {s: sorted(x for x in v if x in LABELS) for s, v in p.labels(p.sample_ids()).items()}
        ok_replay = replay(p) == now
    return {"edits": int(len(lat)), "edits_with_change": int(changed),
            "edits_per_s": len(lat) / seconds, "median_ms": float(np.median(lat) * 1e3),
            "p95_ms": float(np.percentile(lat, 95) * 1e3),
            "history_has_every_edit": bool(ok_count), "replay_equals_labels": bool(ok_replay)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)

    from core.io import import_source
    from core.project import Project
    from core.project.copy import copy_project
    from tests.pg_cluster import PgCluster

    print(f"CPU: {cpu_model()}")
    tmp = Path(tempfile.mkdtemp(prefix="latentmap-bench-"))
    sqlite_loc = str(tmp / "sqlite")
    with Project.create(sqlite_loc) as p:
        import_source(p, Path(args.data))
        for name in LABELS:
            p.add_label(name)
        n = p.count()
    print(f"{n} BreastMNIST samples, {args.writers} writers, {args.seconds:.0f} s each back end")
    out = {"cpu": cpu_model(), "writers": args.writers, "seconds": args.seconds, "samples": n}
    with PgCluster() as server:
        pg_loc = f"{server.new_database()}?folder={tmp / 'sqlite'}"   # arrays stay where they are
        copy_project(sqlite_loc, pg_loc, copy_files=False)
        out["postgresql"] = run(pg_loc, args.writers, args.seconds)
    out["sqlite"] = run(sqlite_loc, args.writers, args.seconds)
    print(f"{'back end':<12}{'edits/s':>10}{'median ms':>12}{'p95 ms':>10}  history == edits, replay == labels")
    for name in ("postgresql", "sqlite"):
        r = out[name]
        print(f"{name:<12}{r['edits_per_s']:>10.1f}{r['median_ms']:>12.2f}{r['p95_ms']:>10.2f}"
              f"  {r['history_has_every_edit']}, {r['replay_equals_labels']}")
    res = ROOT / "bench" / "results" / "pg_labelling"
    res.mkdir(parents=True, exist_ok=True)
    (res / "results.json").write_text(json.dumps(out, indent=2))
    print(f"results: {res / 'results.json'}")
    ok = all(out[b]["history_has_every_edit"] and out[b]["replay_equals_labels"]
             for b in ("postgresql", "sqlite"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
