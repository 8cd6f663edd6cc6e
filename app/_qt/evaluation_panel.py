"""Evaluation panel, overall figures first: a summary line (retrieval mAP, NMI, accuracy,
purity of the chosen run, and plainly whether it beats the baseline first map), then the
chosen run, the latest other trained run and the baseline side by side, the per-class ROC and
PR curves at a legible size (legend beside the axes, not over them), and the detailed tables
(retrieval mAP per class, Table 1 with every row defined, clustering, Algorithm 1 F1, runs).
Computed off the GUI thread by ``core.evaluation`` and ``app.components.run_comparison``."""
from __future__ import annotations

import math

import pandas as pd
from qtpy.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QPushButton,
                            QScrollArea, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                            QWidget)
from qtpy.QtCore import Qt

from app._qt.jobs import QtJob
from core.jobs import Progress


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


def evaluation_steps(project, run_id: int, split: str | None):
    """Step generator: the chosen run's full evaluation, then each compared run's row.
    Returns ``(evaluation, comparison table, verdict text, better flag)``."""
    from app.components.run_comparison import compare_runs, runs_to_compare, verdict
    from core.evaluation import evaluate_run

    split_name = split or "all"
    compare = runs_to_compare(project, int(run_id))
    total = 1 + len(compare)
    yield Progress(step=0, global_step=0, total_steps=total, message=f"evaluating run {run_id}")
    ev = evaluate_run(project, int(run_id), split=split)
    rows = []
    for i, r in enumerate(compare):
        yield Progress(step=1 + i, global_step=1 + i, total_steps=total, message=f"comparing run {r}")
        rows.append(compare_runs(project, [r], split_name))
    import pandas as pd

    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    text, better = verdict(table, int(run_id))
    yield Progress(step=total, global_step=total, total_steps=total, message="done")
    return ev, table, text, better


def summary_html(table, run_id: int, split: str, verdict_text: str, better) -> str:
    """The overall figures of the chosen run in one line, the verdict under it."""
    if table is None or table.empty or int(run_id) not in set(table["run"]):
        return f"<b>run {run_id}</b>: no labelled samples in split '{split}' to evaluate against"
    r = table[table["run"] == int(run_id)].iloc[0]

    def f(v):
        return "–" if not (isinstance(v, float) and math.isfinite(v)) else f"{v:.3f}"

    line = (f"<span style='font-size:11pt'><b>run {run_id}</b> ({r['method']}) on {split} (n={int(r['n'])}): "
            f"retrieval mAP <b>{f(r['mAP'])}</b> (class-balanced {f(r['mAP (class-balanced)'])}) · "
            f"NMI <b>{f(r['NMI'])}</b> · accuracy <b>{f(r['accuracy'])}</b> · purity <b>{f(r['purity'])}</b></span>")
    if verdict_text:
        colour = "#a40000" if better is False else ("#1b6e20" if better else "#444")
        line += f"<br><span style='color:{colour}; font-weight:bold'>{verdict_text}</span>"
    return line


class EvaluationPanel(QWidget):
    def __init__(self, model, selection=None, parent=None):
        super().__init__(parent)
        self.model = model
        self.result = None
        self.comparison = None
        self.verdict = ("", None)
        self._job = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
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
        self.detach_btn = QPushButton("Detach")
        self.detach_btn.setToolTip("Show the evaluation in its own large window (again to dock it back)")
        self.detach_btn.clicked.connect(self.toggle_detached)
        top.addWidget(self.detach_btn)
        layout.addLayout(top)
        self.summary = QLabel("Evaluate a run: its overall figures and how it compares with the baseline appear here.")
        self.summary.setObjectName("evaluation-summary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        layout.addWidget(self.summary)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #555")
        layout.addWidget(self.notes)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs, 1)
        # curves: ROC and PR side by side, legend in its own column on the right
        # (matplotlib is imported when the curves are first drawn: not on the app's start-up path)
        self._figure = self._canvas = None
        self.curve_box = QComboBox()  # the retrieval PR curve or the per-class curves
        self.curve_box.currentTextChanged.connect(self._draw_curve)
        curves = QWidget()
        cl = QVBoxLayout(curves)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.curve_box)
        canvas_scroll = QScrollArea()  # legible size even in the short docked strip: it scrolls
        canvas_scroll.setWidgetResizable(True)
        self._canvas_scroll = canvas_scroll
        cl.addWidget(canvas_scroll, 1)
        self.curves_widget = curves
        model.run_changed.connect(lambda *_: self.refresh_runs())
        model.clustering_changed.connect(lambda *_: self.refresh_runs())
        self.refresh_runs()

    @property
    def figure(self):
        if self._figure is None:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self._figure = Figure(figsize=(9, 3.2), dpi=96)
            self._canvas = FigureCanvasQTAgg(self._figure)
            self._canvas.setMinimumHeight(250)
            self._canvas_scroll.setWidget(self._canvas)
        return self._figure

    @property
    def canvas(self):
        return self.figure.canvas if self._canvas is None else self._canvas

    def toggle_detached(self) -> None:
        from app._qt.training_panel import toggle_detached

        toggle_detached(self, self.detach_btn)

    def refresh_runs(self) -> None:
        self.run_box.clear()
        runs = self.model.project.runs()
        for _, r in runs[::-1].iterrows():
            self.run_box.addItem(f"run {r['id']} · {r['method']} · {r['status']}", int(r["id"]))
        if self.model.active_run is not None:
            idx = self.run_box.findData(int(self.model.active_run))
            if idx >= 0:
                self.run_box.setCurrentIndex(idx)
        if self.result is None:
            self._show_tables()

    def _show_tables(self) -> None:
        old = [self.tabs.widget(i) for i in range(self.tabs.count())]
        self.tabs.clear()
        for w in old:
            if w is not self.curves_widget:
                w.deleteLater()
        if self.comparison is not None and not self.comparison.empty:
            self.tabs.addTab(frame_to_table(self.comparison), "Comparison")
        if self.result is not None and self.result.curves:
            self.tabs.addTab(self.curves_widget, "Curves")
        if self.result is not None:
            for name, df in self.result.tables.items():
                if name.startswith("Table 1"):
                    self.tabs.addTab(_table1_widget(df), name)
                else:
                    self.tabs.addTab(frame_to_table(df), name)
        df = runs_frame(self.model.project)
        if not df.empty:
            self.tabs.addTab(frame_to_table(df), "Runs")

    def evaluate(self, run_id: int | None = None) -> QtJob:
        from core.workflows.tasks import StepTask

        run_id = run_id if run_id is not None else self.run_box.currentData()
        if run_id is None:
            raise RuntimeError("no run to evaluate yet")
        split = self.split_box.currentText()
        split_arg = None if split == "all" else split
        project = self.model.project
        # each run is judged by its own clustering (the active one when it belongs to it)
        task = StepTask(lambda: evaluation_steps(project, int(run_id), split_arg), name="evaluate")
        job = QtJob(task, None, parent=self)
        self.eval_btn.setEnabled(False)
        self.notes.setText(f"evaluating run {run_id}…")
        job.progress.connect(lambda p: self.notes.setText(p.message) if p.message else None)

        def done(status):
            self.eval_btn.setEnabled(True)
            if status != "finished":
                self.notes.setText(f"evaluation {status}: {job.error}")
                return
            ev, table, text, better = task.result
            self.show_result(ev, table, (text, better), run_id=int(run_id), split=split)

        job.done.connect(done)
        self._job = job
        return job.start()

    def show_result(self, ev, comparison=None, verdict=("", None), *, run_id=None, split="") -> None:
        self.result = ev
        self.comparison = comparison
        self.verdict = verdict
        run_id = run_id if run_id is not None else self.run_box.currentData()
        self.summary.setText(summary_html(comparison, run_id, split, *verdict) if comparison is not None
                             else f"run {run_id}")
        self.notes.setText("; ".join(ev.notes))
        self._show_tables()
        self.tabs.setCurrentIndex(0)
        self.curve_box.blockSignals(True)
        self.curve_box.clear()
        names = list(ev.curves)
        if "ROC per class" in names and "PR per class" in names:
            names = ["ROC and PR per class"] + [n for n in names if n not in ("ROC per class", "PR per class")]
        self.curve_box.addItems(names)
        self.curve_box.blockSignals(False)
        self._draw_curve(self.curve_box.currentText())

    def _draw_curve(self, name: str) -> None:
        self.figure.clear()
        res = self.result
        if res is None or not name:
            ax = self.figure.add_subplot(111)
            ax.text(0.5, 0.5, "Evaluate a run to see its curves", ha="center", va="center")
            ax.set_axis_off()
            self.canvas.draw_idle()
            return
        panels = ["ROC per class", "PR per class"] if name == "ROC and PR per class" else [name]
        gs = self.figure.add_gridspec(1, len(panels) + 1, width_ratios=[1] * len(panels) + [0.45],
                                      left=0.07, right=0.99, bottom=0.2, top=0.88, wspace=0.28)
        handles = labels = None
        for i, pname in enumerate(panels):
            ax = self.figure.add_subplot(gs[0, i])
            for label, x, y in res.curves.get(pname, []):
                ax.plot(x, y, label=str(label), lw=1.6)
            if pname.startswith("ROC"):
                ax.plot([0, 1], [0, 1], color="0.75", ls="--", lw=1)
            xl, yl = res.curve_axes.get(pname, ("", ""))
            ax.set_xlabel(xl, fontsize=9)
            ax.set_ylabel(yl, fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            ax.set_title(pname, fontsize=10)
            handles, labels = ax.get_legend_handles_labels()
        lax = self.figure.add_subplot(gs[0, -1])
        lax.set_axis_off()
        if handles:
            lax.legend(handles, labels, loc="center left", fontsize=8, frameon=False,
                       ncol=1 if len(labels) <= 12 else 2)
        self.canvas.draw_idle()


def _table1_widget(df: pd.DataFrame) -> QWidget:
    """Table 1 with the definition of every row under it."""
    from core.metrics.report import TABLE1_DEFINITIONS

    w = QWidget()
    lay = QVBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(frame_to_table(df), 3)
    text = QLabel("<br>".join(f"<b>{k}</b>: {v}" for k, v in TABLE1_DEFINITIONS.items()))
    text.setWordWrap(True)
    text.setTextFormat(Qt.RichText)
    text.setStyleSheet("font-size: 8pt; color: #333")
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(text)
    scroll.setMaximumHeight(110)
    lay.addWidget(scroll, 1)
    return w
