"""Training panel: pick a method, set its hyperparameters in a form built from its signature,
start, cancel (within one step), resume; live loss and metric curves; device, rate and ETA.

The engine runs in a ``core.jobs.Job`` on a worker thread (through ``QtJob``); this widget only
reacts to its signals, so the GUI stays responsive while it trains.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QLineEdit, QMessageBox, QProgressBar, QPushButton, QScrollArea,
                            QSpinBox, QVBoxLayout, QWidget)

from app._qt.jobs import QtJob
from core.jobs import Progress
from core.methods.registry import FINETUNERS, METHODS, get_finetuner, get_method

CURVE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def method_entries() -> list[tuple[str, str, str]]:
    """(label shown, table, name) for every trainable and fine-tunable method."""
    out = [(name, "methods", name) for name in METHODS]
    out += [(f"finetune: {name}", "finetuners", name) for name in FINETUNERS]
    return out


class _LoadThenTrain:
    """Loads the method's data on the worker thread, then delegates to the method's steps.

    Loading a large cohort must not freeze the GUI either; cancel works during loading too.
    """

    def __init__(self, method, project, dataset=None):
        self.method = method
        self.project = project
        self.dataset = dataset
        self.name = getattr(method, "name", type(method).__name__)
        self.data = None

    def get_params(self):
        return self.method.get_params()

    def state_dict(self):
        return self.method.state_dict()

    @property
    def device_(self):
        return getattr(self.method, "device_", "")

    def steps(self, data=None, *, resume=None):
        from core.pipeline import load_method_data

        yield Progress(message="loading data")
        self.data = load_method_data(self.project, self.method, dataset=self.dataset)
        yield Progress(message=f"{len(self.data)} samples loaded; training")
        yield from self.method.steps(self.data, resume=resume)


class ParamForm(QWidget):
    """Widgets for ``Method.param_specs()``: spin boxes, checkboxes, choices, free text."""

    def __init__(self, specs, parent=None):
        super().__init__(parent)
        self.specs = {s.name: s for s in specs}
        self.widgets: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
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
            w.setValidator(QDoubleValidator())
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


class TrainingPanel(QWidget):
    run_finished = Signal(int, str)  # run id, final status

    def __init__(self, model, selection=None, parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.qjob: QtJob | None = None
        self._task: _LoadThenTrain | None = None
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._series: dict[str, tuple[list, list]] = {}
        self._build()
        self._on_method_changed()
        self._refresh_runs()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QHBoxLayout(self)
        left = QVBoxLayout()
        self.method_box = QComboBox()
        for label, table, name in method_entries():
            self.method_box.addItem(label, (table, name))
        self.method_box.currentIndexChanged.connect(self._on_method_changed)
        left.addWidget(QLabel("Method"))
        left.addWidget(self.method_box)
        self.dataset_box = QComboBox()
        self.dataset_box.addItem("(all samples)", None)
        for d in sorted(set(self.model.samples["dataset"])):
            if d:
                self.dataset_box.addItem(d, d)
        left.addWidget(QLabel("Data"))
        left.addWidget(self.dataset_box)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        left.addWidget(self.form_area, 1)
        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(lambda: self.start())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        left.addLayout(buttons)
        resume_row = QHBoxLayout()
        self.resume_box = QComboBox()
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.clicked.connect(self.resume_selected)
        resume_row.addWidget(self.resume_box, 1)
        resume_row.addWidget(self.resume_btn)
        left.addLayout(resume_row)
        holder = QWidget()
        holder.setLayout(left)
        holder.setMaximumWidth(360)
        root.addWidget(holder)

        # form | run figures | curves side by side: the dock is wide and short
        right = QHBoxLayout()
        info = QGroupBox("Run")
        info.setMaximumWidth(320)
        grid = QFormLayout(info)
        self.status_label = QLabel("idle")
        self.status_label.setObjectName("training-status")
        self.device_label = QLabel(_device_text())
        self.step_label = QLabel("–")
        self.rate_label = QLabel("–")
        self.eta_label = QLabel("–")
        for name, w in (("status", self.status_label), ("device", self.device_label),
                        ("epoch / step", self.step_label), ("samples/s", self.rate_label),
                        ("ETA", self.eta_label)):
            grid.addRow(name, w)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        grid.addRow(self.progress_bar)
        right.addWidget(info)
        pg.setConfigOptions(antialias=True)
        self.loss_plot = pg.PlotWidget(title="loss terms (log scale)")
        self.loss_plot.setBackground("w")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_plot.setLabel("bottom", "step")
        # loss terms differ by orders of magnitude (DeepDiffusion: fit ~100, smooth ~0.01)
        self.loss_plot.setLogMode(y=True)
        self.metric_plot = pg.PlotWidget(title="validation metrics")
        self.metric_plot.setBackground("w")
        self.metric_plot.addLegend(offset=(-10, 10))
        self.metric_plot.setLabel("bottom", "step")
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 3)
        plots.addWidget(self.metric_plot, 2)
        right.addLayout(plots, 1)
        root.addLayout(right, 1)

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
        resume_state = None
        if resume_run is not None:
            from core.jobs import load_checkpoint

            run = self.model.project.run(resume_run)
            params = {**run["params"], **(params or {})}
            resume_state = load_checkpoint(run["checkpoint"])
            self.form.set_values(params)
        params = self.form.values() if params is None else {**self.form.values(), **params}
        method = cls(**params)
        self._task = _LoadThenTrain(method, self.model.project, self.dataset_box.currentData())
        self._reset_curves()
        self.qjob = QtJob(self._task, None, parent=self, project=self.model.project,
                          resume=resume_state, name=cls.name or self.method_box.currentText(),
                          run_id=resume_run)
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
        if p.message and not p.losses:
            self.status_label.setText(p.message)
            return
        if self.cancel_btn.isEnabled():
            self.status_label.setText("running")
        self.device_label.setText(str(getattr(self._task.method, "device_", "") or _device_text()))
        total = f"/{p.steps_per_epoch}" if p.steps_per_epoch else ""
        epochs = f"/{p.n_epochs}" if p.n_epochs else ""
        self.step_label.setText(f"{p.epoch + 1}{epochs} · {p.step}{total} (global {p.global_step})")
        self.rate_label.setText("–" if p.samples_per_s is None else f"{p.samples_per_s:.1f}")
        self.eta_label.setText("–" if p.eta_s is None else _fmt_seconds(p.eta_s))
        if p.fraction is not None:
            self.progress_bar.setValue(int(1000 * p.fraction))
        for key, value in p.losses.items():
            self._append(self.loss_plot, f"loss:{key}", key, p.global_step, value)
        for key, value in p.metrics.items():
            if isinstance(value, (int, float)):
                self._append(self.metric_plot, f"metric:{key}", key, p.global_step, value)

    def _append(self, plot, key, label, x, y) -> None:
        y = float(y)
        if not math.isfinite(y) or (plot is self.loss_plot and y <= 0):
            return
        xs, ys = self._series.setdefault(key, ([], []))
        xs.append(x)
        ys.append(y)
        curve = self._curves.get(key)
        if curve is None:
            colour = CURVE_COLOURS[len(self._curves) % len(CURVE_COLOURS)]
            symbol = "o" if key.startswith("metric:") else None
            curve = plot.plot(pen=pg.mkPen(colour, width=2), name=label, symbol=symbol,
                              symbolBrush=colour, symbolSize=6)
            self._curves[key] = curve
        curve.setData(xs, ys)

    def _reset_curves(self) -> None:
        for plot in (self.loss_plot, self.metric_plot):
            for item in list(self._curves.values()):
                plot.removeItem(item)
        self._curves.clear()
        self._series.clear()
        self.progress_bar.setValue(0)

    def _on_done(self, status: str) -> None:
        qj, task = self.qjob, self._task
        self.qjob = None
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        run_id = qj.job.run_id
        self.status_label.setText(f"{status} (run {run_id})")
        if status == "failed":
            QMessageBox.warning(self, "Training failed", f"{type(qj.error).__name__}: {qj.error}")
        elif status == "finished" and hasattr(task.method, "transform") and task.data is not None:
            self._apply(task, run_id)
        self._refresh_runs()
        self.run_finished.emit(int(run_id or 0), status)

    def _apply(self, task, run_id: int) -> None:
        """Embed, project and cluster with the trained model, off the GUI thread."""
        from app._qt.jobs import function_task
        from core.project.accessors import run_name
        from core.workflows.apply import apply_run

        self.status_label.setText(f"embedding with run {run_id}…")
        applier = QtJob(function_task(lambda: apply_run(self.model.project, task.method, run_id, data=task.data),
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
