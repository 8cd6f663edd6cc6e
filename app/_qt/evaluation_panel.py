"""Evaluation panel: each run's metric tables (retrieval mAP, the inner-ear Table 1, the
ultrasound per-class F1 of Algorithm 1, NMI and purity, final training figures) and the ROC and
PR curves behind them. Computed off the GUI thread by ``core.evaluation``."""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QPushButton,
                            QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                            QWidget)
from qtpy.QtCore import Qt

from app._qt.jobs import QtJob, function_task


def frame_to_table(df: pd.DataFrame) -> QTableWidget:
    t = QTableWidget(len(df), len(df.columns))
    t.setHorizontalHeaderLabels([str(c) for c in df.columns])
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.NoEditTriggers)
    for r, row in enumerate(df.itertuples(index=False)):
        for c, v in enumerate(row):
            text = f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else str(v)
            item = QTableWidgetItem(text)
            if isinstance(v, (int, float)):
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            t.setItem(r, c, item)
    t.resizeColumnsToContents()
    return t


def runs_frame(project) -> pd.DataFrame:
    runs = project.runs()
    rows = []
    for _, r in runs.iterrows():
        row = {"run": int(r["id"]), "method": r["method"], "status": r["status"], "device": r["device"]}
        m = r["metrics"] or {}
        row.update({k: v for k, v in (m.get("last_losses") or {}).items()})
        row.update({k: v for k, v in (m.get("last_metrics") or {}).items() if isinstance(v, (int, float))})
        rows.append(row)
    return pd.DataFrame(rows)


class EvaluationPanel(QWidget):
    def __init__(self, model, selection=None, parent=None):
        super().__init__(parent)
        self.model = model
        self.result = None
        self._job = None
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        self.run_box = QComboBox()
        top.addWidget(self.run_box, 1)
        top.addWidget(QLabel("Split"))
        self.split_box = QComboBox()
        self.split_box.addItems(["test", "val", "train", "all"])
        top.addWidget(self.split_box)
        self.eval_btn = QPushButton("Evaluate")
        self.eval_btn.clicked.connect(lambda: self.evaluate())
        top.addWidget(self.eval_btn)
        layout.addLayout(top)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        layout.addWidget(self.notes)
        split = QSplitter(Qt.Horizontal)
        self.tabs = QTabWidget()
        split.addWidget(self.tabs)
        self.figure = Figure(figsize=(5, 3.5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        curves = QWidget()
        cl = QVBoxLayout(curves)
        self.curve_box = QComboBox()
        self.curve_box.currentTextChanged.connect(self._draw_curve)
        cl.addWidget(self.curve_box)
        cl.addWidget(self.canvas, 1)
        split.addWidget(curves)
        split.setSizes([500, 400])
        layout.addWidget(split, 1)
        model.run_changed.connect(lambda *_: self.refresh_runs())
        model.clustering_changed.connect(lambda *_: self.refresh_runs())
        self.refresh_runs()

    def refresh_runs(self) -> None:
        self.run_box.clear()
        runs = self.model.project.runs()
        for _, r in runs[::-1].iterrows():
            self.run_box.addItem(f"run {r['id']} · {r['method']} · {r['status']}", int(r["id"]))
        if self.model.active_run is not None:
            idx = self.run_box.findData(int(self.model.active_run))
            if idx >= 0:
                self.run_box.setCurrentIndex(idx)
        self._show_runs_only()

    def _show_runs_only(self) -> None:
        self.tabs.clear()
        df = runs_frame(self.model.project)
        if not df.empty:
            self.tabs.addTab(frame_to_table(df), "Runs")

    def evaluate(self, run_id: int | None = None) -> QtJob:
        from core.evaluation import evaluate_run

        run_id = run_id if run_id is not None else self.run_box.currentData()
        if run_id is None:
            raise RuntimeError("no run to evaluate yet")
        split = self.split_box.currentText()
        split = None if split == "all" else split
        project = self.model.project
        # against the run's own clustering (the active one when it belongs to this run)
        task = function_task(lambda: evaluate_run(project, int(run_id), split=split), name="evaluate",
                             message=f"evaluating run {run_id}")
        job = QtJob(task, None, parent=self)
        self.eval_btn.setEnabled(False)
        self.notes.setText(f"evaluating run {run_id}…")

        def done(status):
            self.eval_btn.setEnabled(True)
            if status != "finished":
                self.notes.setText(f"evaluation {status}: {job.error}")
                return
            self.show_result(task.result)

        job.done.connect(done)
        self._job = job
        return job.start()

    def show_result(self, ev) -> None:
        self.result = ev
        self._show_runs_only()
        for name, df in ev.tables.items():
            self.tabs.addTab(frame_to_table(df), name)
        if ev.tables:
            self.tabs.setCurrentIndex(1)
        self.notes.setText("; ".join(ev.notes))
        self.curve_box.blockSignals(True)
        self.curve_box.clear()
        self.curve_box.addItems(list(ev.curves))
        self.curve_box.blockSignals(False)
        self._draw_curve(self.curve_box.currentText())

    def _draw_curve(self, name: str) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        if self.result is not None and name in self.result.curves:
            for label, x, y in self.result.curves[name]:
                ax.plot(x, y, label=str(label), lw=1.8)
            xl, yl = self.result.curve_axes.get(name, ("", ""))
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
            ax.set_title(name, fontsize=10)
        else:
            ax.text(0.5, 0.5, "Evaluate a run to see its curves", ha="center", va="center")
            ax.set_axis_off()
        self.canvas.draw_idle()
