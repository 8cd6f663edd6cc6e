"""Training panel: pick a method, set its hyperparameters in a form built from its signature,
start, cancel (within one step), resume (the curves from before the cancel stay); one small
chart per loss term and metric, each on its own axis; device, rate, ETA and the method's warnings.

The engine runs in a ``core.jobs.Job`` on a worker thread (through ``QtJob``); this widget only
reacts to its signals, so the GUI stays responsive while it trains.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QFormLayout, QGridLayout,
                            QGroupBox, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QProgressBar,
                            QPushButton, QScrollArea, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from app._qt.jobs import QtJob
from core.jobs import Progress
from core.methods.registry import FINETUNERS, METHODS, get_finetuner, get_method

CURVE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def method_entries() -> list[tuple[str, str, str]]:
    """(label shown, table, name) for every trainable and fine-tunable method."""
    out = [(name, "methods", name) for name in METHODS]
    out += [(f"finetune: {name}", "finetuners", name) for name in FINETUNERS]
    return out


class ParamForm(QWidget):
    """Widgets for ``Method.param_specs()``: spin boxes, checkboxes, choices, free text."""

    def __init__(self, specs, parent=None):
        super().__init__(parent)
        self.specs = {s.name: s for s in specs}
        self.widgets: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(2)
        form.setContentsMargins(4, 2, 4, 2)
        for s in specs:
            w = self._widget_for(s)
            w.setObjectName(f"param-{s.name}")
            if s.help:
                w.setToolTip(s.help)
            self.widgets[s.name] = w
            form.addRow(s.name.replace("_", " "), w)

    @staticmethod
    def _widget_for(s) -> QWidget:
        if s.choices:
            w = QComboBox()
            w.addItems([str(c) for c in s.choices])
            if s.default is not None:
                w.setCurrentText(str(s.default))
            return w
        if s.type is bool:
            w = QCheckBox()
            w.setChecked(bool(s.default))
            return w
        if s.type is int:
            w = QSpinBox()
            w.setRange(-2**31 + 1, 2**31 - 1)
            w.setValue(int(s.default))
            return w
        w = QLineEdit("" if s.default is None else repr(s.default) if s.type in (tuple, list) else str(s.default))
        if s.type is float:
            w.setValidator(QDoubleValidator(w))  # a Qt parent: deleted with its field
        return w

    def values(self) -> dict:
        from core.cli._common import coerce

        out = {}
        for name, w in self.widgets.items():
            s = self.specs[name]
            if isinstance(w, QComboBox):
                raw = w.currentText()
                out[name] = next((c for c in s.choices if str(c) == raw), raw)
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[name] = w.value()
            else:
                text = w.text().strip()
                out[name] = s.default if (text == "" and s.default is None) else coerce(text, s)
        return out

    def set_values(self, params: dict) -> None:
        for name, value in params.items():
            w = self.widgets.get(name)
            if w is None:
                continue
            if isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            else:
                w.setText("" if value is None else str(value))


class MetricCharts(QWidget):
    """One small chart per quantity (each loss term, each metric), each with its own y axis and
    its name as the title: quantities of different ranges (a cluster count ~20 next to NMI in
    [0, 1], a fit loss ~100 next to a smoothness term ~0.01) never flatten each other, and no
    legend covers a curve. Charts flow into as many columns as the width allows."""

    MIN_W, CHART_H = 230, 125

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.series: dict[str, tuple[list, list]] = {}
        self._grid_host = QWidget()
        self.grid = QGridLayout(self._grid_host)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(4)
        self.placeholder = QLabel("Curves appear here once training steps arrive: one chart per "
                                  "loss term and per metric, each on its own axis.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignCenter)
        self.grid.addWidget(self.placeholder, 0, 0)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self._grid_host)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.scroll)
        self._columns = 0

    def columns_for(self, width: int) -> int:
        return max(1, min(4, width // self.MIN_W))

    def _relayout(self, force: bool = False) -> None:
        cols = self.columns_for(self.scroll.viewport().width())
        if cols == self._columns and not force:
            return
        self._columns = cols
        for w in self.plots.values():
            self.grid.removeWidget(w)
        for i, w in enumerate(self.plots.values()):
            self.grid.addWidget(w, i // cols, i % cols)
        for c in range(4):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)
        self.grid.setRowStretch(len(self.plots) // cols + 1, 1)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self._relayout()

    def append(self, key: str, x: float, y: float) -> None:
        """Add the point (x, y) to the chart named ``key`` ("loss: fit", "nmi"...), creating it."""
        y = float(y)
        if not math.isfinite(y):
            return
        xs, ys = self.series.setdefault(key, ([], []))
        xs.append(float(x))
        ys.append(y)
        if key not in self.plots:
            self._new_plot(key)
        self.curves[key].setData(xs, ys)
        # charts scrolled out of view are not painted; their range must still follow the data
        self.plots[key].getPlotItem().getViewBox().updateAutoRange()

    def _new_plot(self, key: str) -> None:
        self.placeholder.setVisible(False)
        colour = CURVE_COLOURS[len(self.plots) % len(CURVE_COLOURS)]
        w = pg.PlotWidget()
        w.setObjectName(f"chart-{key}")
        w.setBackground("w")
        w.setTitle(key, size="9pt", color="#222")
        w.setMinimumSize(self.MIN_W - 20, self.CHART_H)
        w.setMaximumHeight(self.CHART_H + 40)
        w.showGrid(x=True, y=True, alpha=0.25)
        for side in ("left", "bottom"):
            ax = w.getAxis(side)
            ax.setStyle(tickFont=_small_font(), tickTextOffset=3)
            ax.setTextPen("#333")
            ax.setTickDensity(0.6 if side == "left" else 0.4)  # no overlapping tick labels
        w.getAxis("left").setWidth(48)
        w.setMouseEnabled(x=False, y=False)
        w.hideButtons()
        symbol = "o" if not key.startswith("loss") else None
        self.curves[key] = w.plot(pen=pg.mkPen(colour, width=2), symbol=symbol, symbolBrush=colour,
                                  symbolSize=5, symbolPen=None)
        self.plots[key] = w
        self._relayout(force=True)

    def clear(self) -> None:
        for w in self.plots.values():
            self.grid.removeWidget(w)
            w.deleteLater()
        self.plots.clear()
        self.curves.clear()
        self.series.clear()
        self.placeholder.setVisible(True)
        self._columns = 0


def _small_font():
    from qtpy.QtGui import QFont

    f = QFont()
    f.setPointSize(8)
    return f


def history_series(path) -> list[tuple[str, float, float]]:
    """(chart key, global step, value) rows of a run's ``history.csv`` (empty when absent)."""
    import pandas as pd
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return []
    try:
        df = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - an unreadable history only costs the old curves
        return []
    out = []
    x = df["global_step"] if "global_step" in df else pd.Series(range(len(df)))
    for col in df.columns:
        if col.startswith("loss/"):
            key = f"loss: {col[5:]}"
        elif col.startswith("metric/") and not col.endswith("collapsed"):
            # (the *_collapsed flags are booleans in the live progress, which gets no chart;
            # the history stores them as 0/1 and must not chart them either)
            key = col[7:]
        else:
            continue
        vals = pd.to_numeric(df[col], errors="coerce")
        out += [(key, float(a), float(b)) for a, b in zip(x, vals) if math.isfinite(b)]
    return out


class TrainingPanel(QWidget):
    """Top: method, data, start / cancel / resume, detach. Left: the hyperparameter form (it
    scrolls) above the run's figures (status, device, step, rate, ETA, warnings). Right: one
    chart per quantity. ``run_finished(run id, status)`` at the end of each run."""

    run_finished = Signal(int, str)  # run id, final status

    def __init__(self, model, selection=None, parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.qjob: QtJob | None = None
        self._run = None  # core.workflows.training.TrainingRun being trained
        self.warnings: list[str] = []
        self._build()
        from app._qt.after_paint import after_first_paint

        # the method's form and the device import torch: after the main window has shown
        self.form = None
        after_first_paint(self._load_method)

    def _load_method(self) -> None:
        self.device_label.setText(_device_text())
        self._on_method_changed()
        self.show_run_history(self.model.active_run)
        self.model.run_changed.connect(self.show_run_history)

    def show_run_history(self, run_id) -> None:
        """While nothing trains, the charts show the active run's curves from its history.csv,
        so a finished run's training can be inspected after reopening the project."""
        if self.qjob is not None or run_id is None:
            return
        try:
            run = self.model.project.run(int(run_id))
        except Exception:  # noqa: BLE001 - a run that went away: keep the charts as they are
            return
        self._reset_curves(int(run_id))
        what = ("its training curves" if self.charts.plots
                else "no training curves recorded (a first map or an embedding, not a training)")
        self.status_label.setText(f"run {int(run_id)} ({run['method']}, {run['status']}): {what}")

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.method_box = QComboBox()
        for label, table, name in method_entries():
            self.method_box.addItem(label, (table, name))
        self.method_box.currentIndexChanged.connect(self._on_method_changed)
        bar.addWidget(QLabel("Method"))
        bar.addWidget(self.method_box, 2)
        self.dataset_box = QComboBox()
        self.dataset_box.addItem("(all samples)", None)
        for d in sorted(set(self.model.samples["dataset"])):
            if d:
                self.dataset_box.addItem(d, d)
        bar.addWidget(QLabel("Data"))
        bar.addWidget(self.dataset_box, 1)
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(lambda: self.start())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.resume_box = QComboBox()
        self.resume_box.setMinimumContentsLength(14)
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.clicked.connect(self.resume_selected)
        self.detach_btn = QPushButton("Detach")
        self.detach_btn.setToolTip("Show the training view in its own large window (again to dock it back)")
        self.detach_btn.clicked.connect(self.toggle_detached)
        for w in (self.start_btn, self.cancel_btn, self.resume_box, self.resume_btn, self.detach_btn):
            bar.addWidget(w)
        root.addLayout(bar)

        split = QSplitter(Qt.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form_area.setMinimumHeight(90)
        ll.addWidget(self.form_area, 3)
        info = QGroupBox("Run")
        grid = QVBoxLayout(info)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setSpacing(2)
        self.status_label = QLabel("idle")
        self.status_label.setObjectName("training-status")
        self.status_label.setWordWrap(True)
        self.device_label = QLabel("…")
        self.step_label = QLabel("–")
        self.rate_label = QLabel("–")
        self.eta_label = QLabel("–")
        row1 = QHBoxLayout()
        row1.addWidget(QLabel("<b>status</b>"))
        row1.addWidget(self.status_label, 1)
        row1.addWidget(QLabel("<b>device</b>"))
        row1.addWidget(self.device_label)
        row2 = QHBoxLayout()
        for name, w in (("epoch · step", self.step_label), ("samples/s", self.rate_label),
                        ("ETA", self.eta_label)):
            row2.addWidget(QLabel(f"<b>{name}</b>"))
            row2.addWidget(w)
        row2.addStretch(1)
        grid.addLayout(row1)
        grid.addLayout(row2)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumHeight(16)
        grid.addWidget(self.progress_bar)
        self.warning_label = QLabel("")
        self.warning_label.setObjectName("training-warnings")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #a40000")
        self.warning_label.setVisible(False)
        grid.addWidget(self.warning_label)
        ll.addWidget(info, 0)
        split.addWidget(left)
        pg.setConfigOptions(antialias=True)
        self.charts = MetricCharts()
        split.addWidget(self.charts)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([330, 1200])
        self.splitter = split
        root.addWidget(split, 1)

    def toggle_detached(self) -> None:
        """Float the training dock as a large window (or dock it back)."""
        toggle_detached(self, self.detach_btn)


    def _on_method_changed(self) -> None:
        cls = self.method_class()
        self.form = ParamForm(cls.param_specs() if cls else [])
        self.form_area.setWidget(self.form)
        self._refresh_runs()

    def method_class(self):
        table, name = self.method_box.currentData()
        try:
            return get_method(name) if table == "methods" else get_finetuner(name)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, others stay usable
            self.status_label.setText(f"{name} unavailable: {exc}")
            return None

    def select_method(self, name: str) -> None:
        idx = self.method_box.findText(name)
        if idx < 0:
            raise KeyError(f"no method {name!r} in the training panel")
        self.method_box.setCurrentIndex(idx)

    def _refresh_runs(self) -> None:
        self.resume_box.clear()
        runs = self.model.project.runs()
        _, name = self.method_box.currentData()
        cls = self.method_class()
        key = getattr(cls, "name", name) if cls else name
        for _, r in runs[::-1].iterrows():
            if r["checkpoint"] and r["method"] in (key, name) and r["status"] != "finished":
                self.resume_box.addItem(f"run {r['id']} ({r['status']})", int(r["id"]))
        self.resume_btn.setEnabled(self.resume_box.count() > 0 and self.qjob is None)

    # ------------------------------------------------------------------ control
    def start(self, params: dict | None = None, *, resume_run: int | None = None) -> QtJob:
        if self.qjob is not None:
            raise RuntimeError("a training run is already in progress")
        cls = self.method_class()
        if cls is None:
            raise RuntimeError("this method cannot be loaded")
        from core.workflows.training import TrainingRun

        if resume_run is not None:
            params = {**self.model.project.run(resume_run)["params"], **(params or {})}
            self.form.set_values(params)
        params = self.form.values() if params is None else {**self.form.values(), **params}
        run = TrainingRun(self.model.project, cls, params, dataset=self.dataset_box.currentData(),
                          resume=resume_run, name=cls.name or self.method_box.currentText(),
                          check_resume=False)  # the resume list holds this method's stopped runs only
        self._run = run
        self._reset_curves(resume_run)
        self.qjob = QtJob(run.task, None, parent=self, **run.job_kwargs())
        self.qjob.progress.connect(self._on_progress)
        self.qjob.status.connect(self._on_status)
        self.qjob.done.connect(self._on_done)
        self.start_btn.setEnabled(False)
        self.resume_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status_label.setText("starting")
        return self.qjob.start()

    def cancel(self) -> None:
        if self.qjob is not None:
            self.qjob.cancel()

    def resume_selected(self) -> None:
        run_id = self.resume_box.currentData()
        if run_id is not None:
            self.start(resume_run=int(run_id))

    # ------------------------------------------------------------------ job signals
    def _on_status(self, s: str) -> None:
        self.status_label.setText("cancelling…" if s == "cancelling" else s)
        if s == "cancelling":
            self.cancel_btn.setEnabled(False)

    def _on_progress(self, p: Progress) -> None:
        self._collect_warnings(p)
        if p.message and not p.losses and not p.metrics:
            self.status_label.setText(p.message)
            return
        if self.cancel_btn.isEnabled():
            self.status_label.setText("running")
        method = getattr(self._run, "method", None)
        self.device_label.setText(str(getattr(method, "device_", "") or _device_text()))
        total = f"/{p.steps_per_epoch}" if p.steps_per_epoch else ""
        epochs = f"/{p.n_epochs}" if p.n_epochs else ""
        self.step_label.setText(f"{p.epoch + 1}{epochs} · {p.step}{total} (global {p.global_step})")
        self.rate_label.setText("–" if p.samples_per_s is None else f"{p.samples_per_s:.1f}")
        self.eta_label.setText("–" if p.eta_s is None else _fmt_seconds(p.eta_s))
        if p.fraction is not None:
            self.progress_bar.setValue(int(1000 * p.fraction))
        for key, value in p.losses.items():
            if isinstance(value, (int, float)):
                self.charts.append(f"loss: {key}", p.global_step, value)
        for key, value in p.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.charts.append(key, p.global_step, value)

    def _collect_warnings(self, p: Progress) -> None:
        """Warnings a method reports (``metrics["warnings"]`` / ``metrics["warning"]``, a string
        or a list, e.g. "embedding collapsed") are listed under the run's figures."""
        new = []
        for key in ("warning", "warnings"):
            v = p.metrics.get(key) if isinstance(p.metrics, dict) else None
            if isinstance(v, str) and v:
                new.append(v)
            elif isinstance(v, (list, tuple)):
                new += [str(x) for x in v if x]
        changed = False
        for w in new:
            if w not in self.warnings:
                self.warnings.append(w)
                changed = True
        if changed:
            self.warning_label.setText("\n".join(f"⚠ {w}" for w in self.warnings[-6:]))
            self.warning_label.setVisible(True)

    def _reset_curves(self, resume_run: int | None = None) -> None:
        """Clear the charts; a resumed run first shows its curves from before the cancel."""
        self.charts.clear()
        self.warnings = []
        self.warning_label.clear()
        self.warning_label.setVisible(False)
        self.progress_bar.setValue(0)
        if resume_run is not None:
            hist = self.model.project.run_dir(int(resume_run)) / "history.csv"
            for key, x, y in history_series(hist):
                self.charts.append(key, x, y)

    def _on_done(self, status: str) -> None:
        qj, run = self.qjob, self._run
        self.qjob = None
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        run_id = qj.job.run_id
        self.status_label.setText(f"{status} (run {run_id})")
        if status == "failed":
            QMessageBox.warning(self, "Training failed", f"{type(qj.error).__name__}: {qj.error}")
        elif status == "diverged":  # NaN loss or weights: the message says where and what to change
            QMessageBox.warning(self, "Training diverged", qj.job.message)
        elif status == "finished" and run.can_apply():
            self._apply(run, qj.job)
        self._refresh_runs()
        self.run_finished.emit(int(run_id or 0), status)

    def _apply(self, run, job) -> None:
        """Embed, project and cluster with the trained model, off the GUI thread."""
        from app._qt.jobs import function_task
        from core.project.accessors import run_name

        run_id = job.run_id
        self.status_label.setText(f"embedding with run {run_id}…")
        applier = QtJob(function_task(lambda: run.apply(job),
                                      name="apply", message="embedding all samples"), None, parent=self)

        def done(status):
            if status == "finished":
                clusterings = self.model.project.clusterings()
                mine = clusterings[clusterings["name"].str.startswith(run_name(run_id))]
                self.model.active_run = run_id
                if not mine.empty:
                    self.model.active_clustering = mine.iloc[-1]["name"]
                self.model.projection_changed.emit("pca")
                self.status_label.setText(f"finished (run {run_id}); embedding applied")
            else:
                self.status_label.setText(f"embedding {status}: {applier.error}")

        applier.done.connect(done)
        self._applier = applier
        applier.start()


def _device_text() -> str:
    try:
        from core.device import pick_device

        return str(pick_device("auto"))
    except Exception:  # noqa: BLE001
        return "cpu"


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def toggle_detached(widget, button=None) -> None:
    """Float the dock holding ``widget`` as a large window centred on its screen, or dock it
    back; ``button``'s text follows ("Detach" / "Dock")."""
    dock = widget.parent()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parent()
    if dock is None:
        return
    floating = not dock.isFloating()
    dock.setFloating(floating)
    if floating:
        screen = dock.screen().availableGeometry() if dock.screen() else None
        w, h = (1400, 850) if screen is None else (int(screen.width() * 0.85), int(screen.height() * 0.85))
        dock.resize(w, h)
        if screen is not None:
            dock.move(screen.x() + (screen.width() - w) // 2, screen.y() + (screen.height() - h) // 2)
    if button is not None:
        button.setText("Dock" if floating else "Detach")
