"""Regenerate the README's screenshots (``make screenshots``): the main window on the sample
project (the one ``make run`` opens, built on first use) and the gallery of one cluster.

Run under a virtual screen when there is no display (the Makefile target does), at the default
window size 1600 x 1000. Writes ``docs/images/main-window.png`` and ``docs/images/gallery.png``
and prints their paths.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pump(app, seconds: float = 0.5) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", help="project folder (default: the sample project, built on first use)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = ap.parse_args(argv)

    from app.main import _qapp, apply_style

    app = _qapp()
    apply_style(app)
    if args.project:
        project = Path(args.project)
    else:
        from core.sample_project import build_sample_project, default_location, is_complete

        project = default_location()
        if not is_complete(project):
            project = build_sample_project()
    import shutil
    import tempfile

    from app._qt.main_window import STATE_KEY, MainWindow
    from app.components import ProjectModel
    from core.project import Project

    # a copy without the saved session: the screenshots show the default layout and first
    # sample, not whatever the last user of this project left selected (nor touch their project)
    copy = Path(tempfile.mkdtemp(prefix="latentmap-shots-")) / Path(project).name
    shutil.copytree(project, copy)
    p = Project.open(copy)
    p.save_state(STATE_KEY, {})
    p.close()
    win = MainWindow(ProjectModel.open(copy))
    win._non_blocking_errors = True
    win.resize(1600, 1000)
    win.show()
    _pump(app, 2.0)
    m = win.model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [win.save_screenshot(out / "main-window.png")]
    # the gallery: the members of the current sample's cluster
    cl = m.clustering()
    if cl is not None and len(cl):
        cur = win.selection.current or cl.index[0]
        members = [str(s) for s, c in cl.items() if c == cl.get(cur, cl.iloc[0])]
        win.docks["Gallery"].raise_()
        win.selection.select(members, current=members[0])
        g = win.panels["Gallery"]
        g.rebuild()  # now, not after the selection debounce
        t0 = time.time()
        while not g.is_filled() and time.time() - t0 < 60:
            _pump(app, 0.1)
        _pump(app, 0.5)
        paths.append(win.save_screenshot(out / "gallery.png"))
    for path in paths:
        print(path)
    win.close()
    shutil.rmtree(copy.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
