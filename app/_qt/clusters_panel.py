"""Clusters panel: every cluster with its size, member thumbnails, purity, Algorithm-1 label
vector (unmatched clusters flagged), manual overrides, re-clustering, and a jump to the
members in every view (through the shared Selection).
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from qtpy.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView,
                            QLabel, QMenu, QProgressBar, QPushButton, QSpinBox, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from app._qt.jobs import QtJob, run_steps
from core.cluster.mapping import cluster_rows

COLUMNS = ["cluster", "size", "members", "purity", "dev", "Algorithm 1", "override", "status"]
THUMB = 40
N_THUMBS = 4


class ClustersPanel(QWidget):
    def __init__(self, model, selection, parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.rows: list[dict] = []
        self._job: QtJob | None = None
        self._build()
        model.clustering_changed.connect(lambda *_: self.refresh())
        model.labels_changed.connect(lambda *_: self.refresh())
        model.dev_changed.connect(lambda *_: self.refresh())
        model.run_changed.connect(lambda *_: self.refresh())
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.clustering_box = QComboBox()
        self.clustering_box.activated.connect(self._choose_clustering)
        top.addWidget(QLabel("Clustering"))
        top.addWidget(self.clustering_box, 1)
        self.alg1_btn = QPushButton("Map clusters to labels")
        self.alg1_btn.setToolTip("Algorithm 1: each cluster gets the mean label vector of its "
                                 "development-set members")
        self.alg1_btn.clicked.connect(self.compute_algorithm1)
        top.addWidget(self.alg1_btn)
        layout.addLayout(top)

        re = QHBoxLayout()
        re.addWidget(QLabel("K"))
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 1000)
        self.k_spin.setValue(10)
        re.addWidget(self.k_spin)
        self.selection_only = QCheckBox("selection only")
        re.addWidget(self.selection_only)
        self.recluster_btn = QPushButton("Re-cluster (k-means)")
        self.recluster_btn.clicked.connect(lambda: self.recluster())
        re.addWidget(self.recluster_btn)
        self.merge_btn = QPushButton("Merge into K")
        self.merge_btn.setToolTip("Join the current clustering's clusters into K by average linkage of "
                                  "their centroids, as a new clustering (for an over-clustering; one from the "
                                  "over-clustering head is weighed by its probabilities)")
        self.merge_btn.clicked.connect(lambda: self.merge())
        re.addWidget(self.merge_btn)
        self.over_head_btn = QPushButton("From over-clustering head")
        self.over_head_btn.setToolTip("A new clustering from the run's over-clustering head (PICA: 7 x K "
                                      "clusters): the finer clusters Algorithm 1 maps to labels best")
        self.over_head_btn.clicked.connect(lambda: self.cluster_from_over_head())
        re.addWidget(self.over_head_btn)
        # a clustering job's progress and its Cancel (over-head and merge predict every sample)
        self.job_bar = QProgressBar()
        self.job_bar.setMaximumWidth(160)
        self.job_cancel_btn = QPushButton("Cancel")
        self.job_cancel_btn.clicked.connect(self.cancel_job)
        for w in (self.job_bar, self.job_cancel_btn):
            w.setVisible(False)
            re.addWidget(w)
        re.addStretch(1)
        layout.addLayout(re)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setIconSize(QSize(THUMB * N_THUMBS, THUMB))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(lambda r, c: self.select_members(r))
        self.table.setContextMenuPolicy(Qt.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        layout.addWidget(self.table, 1)

        actions = QHBoxLayout()
        self.members_btn = QPushButton("Select members")
        self.members_btn.clicked.connect(lambda: self.select_members(self.table.currentRow()))
        self.assign_btn = QPushButton("Assign label…")
        self.assign_btn.clicked.connect(self._assign_menu)
        self.clear_btn = QPushButton("Clear override")
        self.clear_btn.clicked.connect(lambda: self.override(self.current_cluster(), None))
        for b in (self.members_btn, self.assign_btn, self.clear_btn):
            actions.addWidget(b)
        actions.addStretch(1)
        self.info = QLabel("")
        actions.addWidget(self.info)
        layout.addLayout(actions)

    # ------------------------------------------------------------------ data
    def refresh(self) -> None:
        project = self.model.project
        self.over_head_btn.setEnabled(self._job is None and self._run_has_over_head())
        names = project.clusterings()["name"].tolist()
        self.clustering_box.blockSignals(True)
        self.clustering_box.clear()
        self.clustering_box.addItems(names)
        active = self.model.active_clustering
        if active in names:
            self.clustering_box.setCurrentText(active)
        self.clustering_box.blockSignals(False)
        if not active or active not in names:
            self.rows = []
            self.table.setRowCount(0)
            self.info.setText("no clustering yet: train a method or re-cluster")
            return
        self.rows = cluster_rows(project, active, labels=self.model.labels())
        self._fill_table()

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        n_unmatched = 0
        for r, row in enumerate(self.rows):
            items = [
                str(row["cluster"]), str(row["size"]), "",
                "–" if row["purity"] is None else f"{row['purity']:.2f}",
                str(row["n_dev"]), _vector_text(row["algorithm1"]),
                _vector_text(row["manual"]), "unmatched" if row["unmatched"] else "",
            ]
            for c, text in enumerate(items):
                item = QTableWidgetItem(text)
                if c in (0, 1, 3, 4):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if row["unmatched"] and c == 7:
                    item.setForeground(QBrush(QColor("#c0392b")))
                self.table.setItem(r, c, item)
            icon_item = QTableWidgetItem()
            icon_item.setIcon(QIcon(self._strip(row["members"][:N_THUMBS])))
            self.table.setItem(r, 2, icon_item)
            n_unmatched += bool(row["unmatched"])
        total = sum(r["size"] for r in self.rows)
        self.info.setText(f"{len(self.rows)} clusters · {total} samples · {n_unmatched} unmatched")

    def _strip(self, ids) -> QPixmap:
        # transparent where a small cluster has fewer than N_THUMBS members (not a black bar)
        strip = QImage(THUMB * N_THUMBS, THUMB, QImage.Format_ARGB32_Premultiplied)
        strip.fill(Qt.transparent)
        from qtpy.QtGui import QPainter

        painter = QPainter(strip)
        for i, sid in enumerate(ids):
            try:  # the model keeps the previews
                arr = np.ascontiguousarray(self.model.thumbnail(sid, size=THUMB))
            except Exception:  # noqa: BLE001 - a missing array must not break the table
                continue
            img = QImage(arr.data, arr.shape[1], arr.shape[0], arr.strides[0], QImage.Format_Grayscale8)
            painter.drawImage(i * THUMB, 0, img.scaled(THUMB, THUMB, Qt.KeepAspectRatio))
        painter.end()
        return QPixmap.fromImage(strip)

    def current_cluster(self) -> int | None:
        r = self.table.currentRow()
        return self.rows[r]["cluster"] if 0 <= r < len(self.rows) else None

    # ------------------------------------------------------------------ actions
    def _choose_clustering(self) -> None:
        self.model.active_clustering = self.clustering_box.currentText()

    def select_members(self, row: int) -> None:
        """Jump from a cluster to its members in every view."""
        if 0 <= row < len(self.rows):
            self.selection.select(self.rows[row]["members"])

    def compute_algorithm1(self) -> dict:
        """Mean development-set label vector per cluster (with 'other'), stored in the project."""
        r = self.model.map_clusters()
        return {"vectors": r.vectors, "counts": r.counts, "unmatched": r.unmatched}

    def override(self, cluster: int | None, label: str | None) -> None:
        if cluster is None:
            return
        vector = None if label is None else {n: float(n == label) for n in self.model.label_names()}
        self.model.set_cluster_label(cluster, vector)

    def _assign_menu(self) -> None:
        cluster = self.current_cluster()
        if cluster is None:
            return
        menu = QMenu(self)
        for name in self.model.label_names():
            menu.addAction(name, lambda n=name: self.override(cluster, n))
        menu.exec_(self.assign_btn.mapToGlobal(self.assign_btn.rect().bottomLeft()))

    def _context_menu(self, pos) -> None:
        row = self.table.rowAt(pos.y())
        if row < 0:
            return
        self.table.selectRow(row)
        cluster = self.rows[row]["cluster"]
        menu = QMenu(self)
        menu.addAction("Select members", lambda: self.select_members(row))
        sub = menu.addMenu("Assign label")
        for name in self.model.label_names():
            sub.addAction(name, lambda n=name: self.override(cluster, n))
        menu.addAction("Clear override", lambda: self.override(cluster, None))
        menu.exec_(self.table.viewport().mapToGlobal(pos))

    def recluster(self, k: int | None = None, *, selection_only: bool | None = None) -> QtJob:
        """k-means with K clusters on the active embedding (or the selection only), in the
        background, saved as a NEW clustering (undoable; the current one keeps its mapping)."""
        from core.workflows.clustering import recluster
        from core.workflows.tasks import single_step

        if self.model.embedding() is None:
            raise RuntimeError("no embedding yet: train a method first")
        k = int(k or self.k_spin.value())
        only = self.selection_only.isChecked() if selection_only is None else selection_only
        ids = None
        if only:
            ids = [s for s in self.selection.ids if s in set(self.model.embedding()[0])]
            if len(ids) < 2:
                raise RuntimeError("select at least two samples to re-cluster the selection")
        project, run = self.model.project, self.model.active_run

        job = run_steps(lambda: single_step(
            lambda: recluster(project, run, k=k, ids=ids, activate=False, author=self.model.author),
            f"k-means K={k}"), name="recluster", parent=self)
        return self._start(job, "re-clustering")

    def _run_has_over_head(self) -> bool:
        """Whether the active run's method has an over-clustering head (from its class: no
        checkpoint is loaded for this)."""
        from core.workflows.clustering import HEAD_PREDICTIONS
        from core.workflows.runs import method_class

        run_id = self.model.active_run
        if run_id is None:
            return False
        try:
            cls = method_class(self.model.project.run(int(run_id))["method"])
        except Exception:  # noqa: BLE001 - an unrecorded or unknown run simply has no head
            return False
        return hasattr(cls, HEAD_PREDICTIONS["head-over"])

    def cluster_from_over_head(self) -> QtJob:
        """The active run's over-clustering head as a NEW clustering, in the background
        (undoable; the current clustering keeps its mapping)."""
        from core.workflows.clustering import overclustering_steps

        if not self._run_has_over_head():
            raise RuntimeError("the active run's method has no over-clustering head (PICA runs have one)")
        project, run = self.model.project, self.model.active_run
        job = run_steps(lambda: overclustering_steps(project, run, activate=False, author=self.model.author),
                        name="over-clustering head", parent=self)
        return self._start(job, "over-clustering head")

    def merge(self, k: int | None = None) -> QtJob:
        """The active clustering's clusters joined into K (average linkage of their centroids),
        in the background, as a NEW clustering (undoable; the fine one keeps its mapping)."""
        from core.workflows.clustering import merge_steps

        clustering = self.model.active_clustering
        if not clustering:
            raise RuntimeError("no clustering to merge: train a method or re-cluster first")
        k = int(k or self.k_spin.value())
        project = self.model.project
        job = run_steps(lambda: merge_steps(project, clustering, k=k, activate=False, author=self.model.author),
                        name="merge", parent=self)
        return self._start(job, "merging")

    def _start(self, job: QtJob, what: str) -> QtJob:
        """Start a clustering job (the clustering buttons wait for it; its progress and Cancel
        show next to them); when it finishes its clustering becomes the active one."""
        for b in (self.recluster_btn, self.over_head_btn, self.merge_btn):
            b.setEnabled(False)
        self.job_bar.setRange(0, 0)
        self.job_cancel_btn.setEnabled(True)
        for w in (self.job_bar, self.job_cancel_btn):
            w.setVisible(True)

        def progress(p):
            if p.fraction is not None:
                self.job_bar.setRange(0, 1000)
                self.job_bar.setValue(int(p.fraction * 1000))
            if p.message:
                self.info.setText(f"{what}: {p.message}")

        def done(status):
            self._job = None
            for w in (self.job_bar, self.job_cancel_btn):
                w.setVisible(False)
            self.recluster_btn.setEnabled(True)
            self.merge_btn.setEnabled(True)
            self.over_head_btn.setEnabled(self._run_has_over_head())
            if status == "finished":
                self.model.clustering_added(job.method.result)
            elif status == "cancelled":
                self.info.setText(f"{what} cancelled: no clustering was added")
            else:
                self.info.setText(f"{what} {status}: {job.error}")

        job.progress.connect(progress)
        job.done.connect(done)
        self._job = job
        return job.start()

    def cancel_job(self) -> None:
        """Stop the running clustering job within one step; nothing is saved."""
        if self._job is not None:
            self.job_cancel_btn.setEnabled(False)
            self._job.cancel()


def _vector_text(vec) -> str:
    if not vec:
        return ""
    items = sorted(((k, v) for k, v in vec.items() if v is not None and v > 0), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:.2f}" for k, v in items[:4])
