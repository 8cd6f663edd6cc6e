"""Filterable table of the project's samples (id, split, labels, dev, dataset, kind, and the
Algorithm-1 prediction with its score and support), linked to the shared Selection both ways:
every selected sample is selected in the table, however many."""
from __future__ import annotations

from qtpy.QtCore import QAbstractTableModel, QItemSelection, QItemSelectionModel, QModelIndex, \
    QSortFilterProxyModel, Qt
from qtpy.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QLineEdit, QTableView, \
    QVBoxLayout, QWidget

COLUMNS = ("id", "split", "labels", "dev", "dataset", "kind", "prediction")


def prediction_cell(p) -> str:
    """'normal 0.73 (15 dev)', 'normal 1.00 (1 dev, low support)', '— unmatched cluster 3'."""
    if p is None:
        return ""
    if p.labels:
        if p.source == "manual":
            return f"{p.text} (by hand)"
        low = ", low support" if p.low_support else ""
        return f"{p.text} {p.score:.2f} ({p.support} dev{low})"
    if p.source:
        return f"— below 0.50 ({p.top(2)})"
    return f"— unmatched cluster {p.cluster}" if "unmatched" in p.reason else "—"


class SamplesTableModel(QAbstractTableModel):
    def __init__(self, model, parent=None, *, fill: bool = True):
        super().__init__(parent)
        self.model = model
        self._rows: list[tuple] = []
        self.row_of: dict[str, int] = {}
        self.predictions: dict = {}
        self.filled = False          # rows read (the main window fills it after its first paint)
        if fill:
            self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        df = self.model.samples
        labels = self.model.labels()
        try:
            from app.components.predictions import sample_predictions

            self.predictions = sample_predictions(self.model)
        except Exception:  # noqa: BLE001 - the table must show even if predictions cannot be read
            self.predictions = {}
        pred = self.predictions
        self._rows = [
            (sid, split, ", ".join(labels.get(sid, [])), "yes" if dev else "", ds, kind,
             prediction_cell(pred.get(sid)))
            # whole columns as lists: iterating pandas' Arrow-backed string columns element by
            # element costs ~10x more at 58,830 rows
            for sid, split, dev, ds, kind in zip(*(df[c].tolist() for c in ("id", "split", "dev", "dataset", "kind")))
        ]
        self._project_pos = {r[0]: i for i, r in enumerate(self._rows)}
        self._sort_rows()
        self.row_of = {r[0]: i for i, r in enumerate(self._rows)}
        self.filled = True
        self.endResetModel()

    def _sort_rows(self) -> None:
        column, order = getattr(self, "_sort_key", (-1, Qt.AscendingOrder))
        if 0 <= column < len(COLUMNS):
            self._rows.sort(key=lambda r: str(r[column]), reverse=order == Qt.DescendingOrder)
        else:                        # project order
            self._rows.sort(key=lambda r: self._project_pos.get(r[0], len(self._project_pos)))

    def sort(self, column, order=Qt.AscendingOrder):
        """Sort the rows in Python (one key per row): the proxy's own sort compares 58,830 rows
        through ~1,000,000 Python ``data()`` calls (tens of seconds). Column -1: project order."""
        self._sort_key = (int(column), order)
        if not self.filled:
            return
        self.layoutAboutToBeChanged.emit()
        before = [r[0] for r in self._rows]
        self._sort_rows()
        self.row_of = {r[0]: i for i, r in enumerate(self._rows)}
        old = self.persistentIndexList()
        self.changePersistentIndexList(old, [self.index(self.row_of[before[i.row()]], i.column()) for i in old])
        self.layoutChanged.emit()

    def update_ids(self, ids) -> None:
        """Refresh the labels/dev cells of some rows (or all when ``ids`` is None)."""
        if not self.filled:
            return                   # the first fill reads them
        if ids is None or len(ids) > 2000:
            self.reload()
            return
        df = self.model.samples
        labels = self.model.labels()
        for sid in ids:
            i = self.row_of.get(sid)
            if i is None:
                continue
            r = self._rows[i]
            self._rows[i] = (r[0], r[1], ", ".join(labels.get(sid, [])),
                             "yes" if bool(df.at[sid, "dev"]) else "", r[4], r[5], r[6])
            self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()):
        return len(COLUMNS)

    def data(self, index, role=Qt.DisplayRole):
        if role in (Qt.DisplayRole, Qt.ToolTipRole) and index.isValid():
            return str(self._rows[index.row()][index.column()])
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section]
        return None

    def sample_id(self, row: int) -> str:
        return self._rows[row][0]


class _AllColumnsFilter(QSortFilterProxyModel):
    """Every whitespace-separated term must occur in some column (case-insensitive)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.terms: list[str] = []

    def set_text(self, text: str) -> None:
        self.terms = [t.lower() for t in text.split()]
        self.invalidateFilter()

    def sort(self, column, order=Qt.AscendingOrder):
        # the table model sorts its rows itself; the proxy keeps its order (sortColumn() stays -1)
        self.sourceModel().sort(column, order)

    def filterAcceptsRow(self, row, parent):
        if not self.terms:
            return True
        src = self.sourceModel()
        hay = " ".join(str(v) for v in src._rows[row]).lower()
        return all(t in hay for t in self.terms)


class SamplesList(QWidget):
    def __init__(self, model, selection, parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self._syncing = False
        # rows are read once the main window has painted (58,830 rows and the proxy's mapping
        # of them cost ~0.4 s of start-up); at once when no window is starting
        self.table_model = SamplesTableModel(model, self, fill=False)
        self.proxy = _AllColumnsFilter(self)
        self.proxy.setSourceModel(self.table_model)

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter: words matched in any column (e.g. 'test hyperplasia')")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter)
        self.count_label = QLabel(self)

        self.view = QTableView(self)
        self.view.setModel(self.proxy)
        # project order first: the indicator is cleared BEFORE sorting is enabled, which sorts by
        # the indicator's column at once (by the id column otherwise: 58,830 rows compared
        # through Python data() calls took most of the app's start-up)
        self.view.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.setColumnWidth(0, 190)
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_row)

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.count_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.view)

        selection.changed.connect(self._on_selection)
        selection.current_changed.connect(self._on_current)
        model.samples_changed.connect(self._reload)
        model.labels_changed.connect(self.table_model.update_ids)
        model.dev_changed.connect(self.table_model.update_ids)
        model.clustering_changed.connect(lambda *_: self._reload())
        self._update_count()
        from app._qt.after_paint import after_first_paint

        after_first_paint(self.fill)

    def fill(self) -> None:
        """Read the rows now when they have not been read yet."""
        if not self.table_model.filled:
            self._reload()
            self._update_count()

    def _reload(self) -> None:
        self.table_model.reload()
        self._on_selection(self.selection.ids)
        self._update_count()   # e.g. "181 / 181" once a new case is imported, not the old count

    def _on_filter(self, text: str) -> None:
        # filtering hides rows; it must not deselect the hidden samples everywhere else
        self._syncing = True
        try:
            self.proxy.set_text(text)
        finally:
            self._syncing = False
        self._on_selection(self.selection.ids)
        self._update_count()

    def _update_count(self) -> None:
        self.count_label.setText(f"{self.proxy.rowCount()} / {self.table_model.rowCount()}")

    def visible_ids(self) -> list[str]:
        return [self.table_model.sample_id(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                for r in range(self.proxy.rowCount())]

    # table -> selection
    def _on_view_selection(self, *_):
        if self._syncing:
            return
        rows = sorted({self.proxy.mapToSource(i).row() for i in self.view.selectionModel().selectedRows()})
        ids = [self.table_model.sample_id(r) for r in rows]
        cur = self.view.currentIndex()
        current = self.table_model.sample_id(self.proxy.mapToSource(cur).row()) if cur.isValid() else None
        self._syncing = True
        try:
            self.selection.select(ids, current=current if current in set(ids) else None)
        finally:
            self._syncing = False

    def _on_current_row(self, cur, _prev):
        if self._syncing or not cur.isValid():
            return
        sid = self.table_model.sample_id(self.proxy.mapToSource(cur).row())
        if sid in self.selection:
            self._syncing = True
            try:
                self.selection.set_current(sid)
            finally:
                self._syncing = False

    # selection -> table
    def _on_selection(self, ids):
        if self._syncing:
            return
        self._syncing = True
        try:
            sm = self.view.selectionModel()
            sm.select(self._selection_ranges(ids), QItemSelectionModel.ClearAndSelect)
        finally:
            self._syncing = False
        self._on_current(self.selection.current)

    def _selection_ranges(self, ids) -> QItemSelection:
        """Every selected sample's row, as few contiguous ranges as the view order allows (one
        range per run of adjacent rows: selecting 58,000 rows stays fast)."""
        src_rows = [self.table_model.row_of.get(sid) for sid in ids]
        src_rows = [r for r in src_rows if r is not None]
        if not src_rows:
            return QItemSelection()
        if not self.proxy.terms and self.proxy.sortColumn() < 0:
            rows = sorted(src_rows)  # unfiltered, unsorted: proxy row = source row
        else:
            rows = sorted(p.row() for p in (self.proxy.mapFromSource(self.table_model.index(r, 0))
                                            for r in src_rows) if p.isValid())
        sel = QItemSelection()
        last = self.proxy.columnCount() - 1
        start = prev = None
        for r in rows + [None]:
            if r is not None and prev is not None and r == prev + 1:
                prev = r
                continue
            if start is not None:
                sel.select(self.proxy.index(start, 0), self.proxy.index(prev, last))
            start = prev = r
        return sel

    def _on_current(self, sid):
        if self._syncing or sid is None:
            return
        r = self.table_model.row_of.get(sid)
        if r is None:
            return
        p = self.proxy.mapFromSource(self.table_model.index(r, 0))
        if p.isValid():
            self._syncing = True
            try:
                self.view.selectionModel().setCurrentIndex(p, QItemSelectionModel.NoUpdate)
                self.view.scrollTo(p)
            finally:
                self._syncing = False
