"""Scatter benchmark: ScatterView against a plain pyqtgraph ScatterPlotItem, same process.

    .venv/bin/python bench/scatter.py [--sizes 100000 1000000] [--steps 5] [--json out.json]

Runs under Xvfb (re-executes itself with ``xvfb-run -a`` when no DISPLAY is set; Qt platform
xcb). The layout is real: a 2D PCA of OrganAMNIST pixels (58,830 CT crops), tiled with small
jitter up to the requested size, coloured by the real organ label. Per size and per widget it
measures, in milliseconds (median over steps):

* pan: ``translateBy`` steps of 5% of the width, 16 in one direction (baseline: --baseline-steps),
  each until the picture is final: our view redraws its raster (or markers) only when the view
  leaves the margin drawn around it last time, so the mean over the steps and the worst step are
  both reported; ``pan_frame`` is the repaint alone before any redraw (what the user sees at once);
* zoom: one ``scaleBy`` step (alternately in and out), likewise until final;
* repaint: a synchronous repaint of an unchanged view;
* recolour: colouring by a categorical column (organ name strings) until repainted;
* lasso: from the lasso's release to the Selection's ``changed`` being emitted, to its handlers
  having returned (views updated), and to the repaint after that.

The baseline draws every point as a ScatterPlotItem marker with a per-point brush, tests the
lasso with matplotlib's Path on all points, and highlights a selection by resetting the brushes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTMAP_SHARED", ROOT.parent / "shared")) / "data"
ORGANS = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
          "lung-left", "lung-right", "pancreas", "spleen"]


def _ensure_display():
    if os.environ.get("DISPLAY") or os.environ.get("_SCATTER_BENCH_XVFB"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("bench/scatter.py needs a display: set DISPLAY or install xvfb-run")
    env = dict(os.environ, _SCATTER_BENCH_XVFB="1", QT_QPA_PLATFORM="xcb")
    cmd = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def layout(n: int, seed: int = 0):
    """(xy, organ names) of ``n`` points: PCA of real OrganAMNIST images, tiled with jitter."""
    import numpy as np
    from sklearn.decomposition import PCA

    path = DATA / "organamnist" / "organamnist.npz"
    if not path.exists():
        sys.exit(f"{path} not found (the benchmark uses the shared OrganAMNIST data)")
    d = np.load(path)
    imgs = np.concatenate([d[f"{s}_images"] for s in ("train", "val", "test")])
    labels = np.concatenate([d[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
    x = imgs.reshape(len(imgs), -1).astype(np.float32) / 255.0
    xy = PCA(2, random_state=seed).fit_transform(x)
    rng = np.random.default_rng(seed)
    take = rng.integers(0, len(xy), n) if n > len(xy) else rng.permutation(len(xy))[:n]
    jitter = rng.normal(scale=0.02 * xy.std(0), size=(n, 2)) if n > len(xy) else 0.0
    return xy[take] + jitter, np.asarray(ORGANS, dtype=object)[labels[take]]


#: a pan step moves the view by this fraction of its width; PAN_STEPS of them in one direction
PAN_STEP = 0.05
PAN_STEPS = 16


def med(v):
    return float(statistics.median(v)) if v else float("nan")


def mean(v):
    return float(statistics.fmean(v)) if v else float("nan")


class Timer:
    def __init__(self):
        self.t = time.perf_counter()

    def ms(self):
        return (time.perf_counter() - self.t) * 1e3


def lasso_polygon(xy, frac=0.35, k=48):
    import numpy as np

    c = np.median(xy, axis=0)
    r = frac * (np.percentile(xy, 95, axis=0) - np.percentile(xy, 5, axis=0)) / 2
    a = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return np.column_stack([c[0] + r[0] * np.cos(a), c[1] + r[1] * np.sin(a)])


def bench_ours(app, xy, cats, steps):
    import numpy as np

    from app._qt.scatter import ScatterView
    from app.components import Selection

    sel = Selection()
    stamp = {}
    sel.changed.connect(lambda ids: stamp.setdefault("emit", time.perf_counter()))  # first handler
    v = ScatterView(None, sel)
    v.resize(1000, 700)
    v.show()
    ids = np.array([f"s{i:07d}" for i in range(len(xy))], dtype=object)
    v.set_points(ids, xy)
    v.set_colours(cats, True, title="organ")
    for _ in range(10):
        app.processEvents()
    v.flush()
    vp = v.plot.viewport()
    vp.repaint()
    out = dict(render_mode_full_view=v.render_mode)

    def settle():
        v.flush()
        vp.repaint()

    (x0, x1), _ = v.vb.viewRange()
    dx = PAN_STEP * (x1 - x0)
    pan, pan_frame, zoom, repaint, recolour = [], [], [], [], []
    for i in range(PAN_STEPS):   # one direction: every few steps the view leaves what was drawn
        t = Timer(); v.vb.translateBy(x=dx); vp.repaint(); pan_frame.append(t.ms())
        t0 = t.t
        settle()
        pan.append((time.perf_counter() - t0) * 1e3)
    v.reset_view(); settle()
    for i in range(steps):
        t = Timer(); v.vb.scaleBy((0.9, 0.9) if i % 2 == 0 else (1 / 0.9, 1 / 0.9)); settle(); zoom.append(t.ms())
        t = Timer(); vp.repaint(); repaint.append(t.ms())
        t = Timer(); v.set_colours(cats, True, title="organ"); vp.repaint(); recolour.append(t.ms())
        app.processEvents()
    v.reset_view(); settle()
    poly = lasso_polygon(xy)
    emit, handled, painted, n_sel = [], [], [], 0
    for i in range(steps):
        sel.clear(); settle()
        stamp.clear()
        t = Timer()
        n_sel = len(v.lasso_select(poly, "replace"))   # what the mouse release calls
        handled.append(t.ms())
        emit.append((stamp["emit"] - t.t) * 1e3)
        vp.repaint()
        painted.append(t.ms())
    v.grab_png(Path(os.environ.get("SCATTER_BENCH_PNG", "/tmp")) / f"scatter_bench_{len(xy)}.png") \
        if os.environ.get("SCATTER_BENCH_PNG") else None
    out.update(pan=mean(pan), pan_max=max(pan), pan_frame=mean(pan_frame), zoom=med(zoom), repaint=med(repaint),
               recolour=med(recolour), lasso_emit=med(emit), lasso_views=med(handled),
               lasso_painted=med(painted), lasso_selected=n_sel)
    v.close()
    v.deleteLater()
    app.processEvents()
    return out


def bench_baseline(app, xy, cats, steps):
    import numpy as np
    import pandas as pd
    import pyqtgraph as pg
    from matplotlib.path import Path as MplPath

    from app._qt.scatter.palette import categorical_palette
    from app.components import Selection

    sel = Selection()
    stamp = {}
    sel.changed.connect(lambda ids: stamp.setdefault("emit", time.perf_counter()))
    w = pg.PlotWidget(background="w")
    w.resize(1000, 700)
    w.show()
    ids = np.array([f"s{i:07d}" for i in range(len(xy))], dtype=object)
    lookup = pd.Index(ids, dtype=object)

    def brushes_for(values, selected=None):
        codes, uniq = pd.factorize(pd.Series(values))
        pal = categorical_palette(len(uniq))
        full = np.array([pg.mkBrush(*c, 235) for c in pal], dtype=object)
        if selected is None:
            return full[codes]
        faded = np.array([pg.mkBrush(*c, 60) for c in pal], dtype=object)
        return np.where(selected, full[codes], faded[codes])

    item = pg.ScatterPlotItem(x=xy[:, 0], y=xy[:, 1], size=5, pen=None, pxMode=True,
                              brush=list(brushes_for(cats)))
    w.addItem(item)

    def on_changed(new_ids):  # the baseline's view update: rebrush every point
        mask = np.zeros(len(ids), bool)
        pos = lookup.get_indexer(pd.Index(list(new_ids), dtype=object))
        mask[pos[pos >= 0]] = True
        item.setBrush(list(brushes_for(cats, mask)))

    sel.changed.connect(on_changed)
    for _ in range(10):
        app.processEvents()
    vp = w.viewport()
    vp.repaint()
    vb = w.getViewBox()
    (x0, x1), _ = vb.viewRange()
    dx = PAN_STEP * (x1 - x0)
    pan, zoom, repaint, recolour = [], [], [], []
    for i in range(steps):
        t = Timer(); vb.translateBy(x=dx); vp.repaint(); pan.append(t.ms())
    vb.translateBy(x=-steps * dx)
    for i in range(steps):
        t = Timer(); vb.scaleBy((0.9, 0.9) if i % 2 == 0 else (1 / 0.9, 1 / 0.9)); vp.repaint(); zoom.append(t.ms())
        t = Timer(); vp.repaint(); repaint.append(t.ms())
        t = Timer(); item.setBrush(list(brushes_for(cats))); vp.repaint(); recolour.append(t.ms())
        app.processEvents()
    poly = MplPath(lasso_polygon(xy))
    emit, handled, painted = [], [], []
    for i in range(steps):
        stamp.clear()
        sel.clear()  # (not timed) and the previous highlight undone
        stamp.clear()
        t = Timer()
        inside = poly.contains_points(xy)
        sel.select(ids[inside].tolist(), mode="replace")
        handled.append(t.ms())
        emit.append((stamp["emit"] - t.t) * 1e3)
        vp.repaint()
        painted.append(t.ms())
    w.close()
    w.deleteLater()
    app.processEvents()
    return dict(pan=mean(pan), pan_max=max(pan), pan_frame=mean(pan), zoom=med(zoom), repaint=med(repaint),
                recolour=med(recolour), lasso_emit=med(emit), lasso_views=med(handled),
                lasso_painted=med(painted), lasso_selected=int(inside.sum()))


ROWS = [("pan", "pan step, until final (mean)"), ("pan_max", "pan step, until final (worst)"),
        ("pan_frame", "pan step, first frame (mean)"),
        ("zoom", "zoom step, until final"), ("repaint", "repaint"),
        ("recolour", "recolour (categorical)"), ("lasso_emit", "lasso release -> changed emitted"),
        ("lasso_views", "lasso release -> handlers returned"),
        ("lasso_painted", "lasso release -> repainted")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=5, help="steps per measure (median reported)")
    ap.add_argument("--baseline-steps", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--numpy", action="store_true", help="measure the numpy raster path (no numba kernels)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    _ensure_display()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    sys.path.insert(0, str(ROOT))
    from qtpy import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    from app._qt.scatter import _kernels

    t = time.perf_counter()
    fused = _kernels.warm(block=not args.numpy)   # the view does this on a thread at start-up
    print(f"raster path: {'numba (fused kernels, ready in %.1f s)' % (time.perf_counter() - t) if fused else 'numpy'}"
          + (f" ({_kernels._state['failed']})" if _kernels._state["failed"] else ""))
    print(f"Qt platform: {app.platformName()}, display {os.environ.get('DISPLAY')}, "
          f"widget 1000x700, {os.cpu_count()} CPUs", flush=True)
    results = {}
    for n in args.sizes:
        xy, cats = layout(n)
        ours = bench_ours(app, xy, cats, args.steps)
        base = None if args.no_baseline else bench_baseline(app, xy, cats, args.baseline_steps)
        results[n] = dict(ours=ours, baseline=base)
        print(f"\n== {n:,} points (OrganAMNIST PCA layout, 11 organ colours); ours at full view: "
              f"{ours['render_mode_full_view']}; lasso selects {ours['lasso_selected']:,} points")
        print(f"{'ms (median unless noted)':38s} {'ScatterView':>12s} {'ScatterPlotItem':>16s} {'ratio':>8s}")
        for key, label in ROWS:
            b = base[key] if base else float("nan")
            ratio = b / ours[key] if base and ours[key] > 0 else float("nan")
            print(f"{label:38s} {ours[key]:12.1f} {b:16.1f} {ratio:7.1f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    return results


if __name__ == "__main__":
    main()
