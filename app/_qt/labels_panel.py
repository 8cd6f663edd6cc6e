"""Labelling the development set: label buttons for the selection (keys 1-9 for the first nine
labels, L for a type-to-search picker over every label), development-set membership, undo/redo,
and an editor for the label set itself. Every click is one transaction in the project database
(with author and time) at once.

Key semantics: on single-label data (no sample carries two labels; "replace" mode) a key gives
the selection that label *instead of* its current one, so relabelling takes one keystroke. In
multi-label mode a key adds the label to every selected sample that lacks it. In both modes a key
removes the label only when *every* selected sample already has it: a mixed selection never
loses a label it had."""
from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor, QKeySequence
from qtpy.QtWidgets import QAction, QCheckBox, QColorDialog, QCompleter, QGridLayout, QGroupBox, \
    QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMessageBox, \
    QPushButton, QVBoxLayout, QWidget

DEFAULT_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                   "#ff9da7", "#9c755f", "#bab0ac"]


def label_colour(name: str, colours: dict, position: int) -> str:
    return colours.get(name) or DEFAULT_COLOURS[position % len(DEFAULT_COLOURS)]


class LabelsPanel(QWidget):
    """``edited()`` after any change made here (tests wait on it)."""

    edited = Signal()

    def __init__(self, model, selection, parent=None):
        super().__init__(parent)
        self.model = model
        self.selection = selection
        self.buttons: dict[str, QPushButton] = {}
        self.shortcut_actions: list[QAction] = []

        self.sel_info = QLabel(self)
        self.sel_info.setWordWrap(True)
        self.toggle_box = QGroupBox("Labels of the selection (keys 1-9, L to search)", self)
        self.toggle_grid = QGridLayout(self.toggle_box)
        self.toggle_grid.setSpacing(3)
        self.replace_box = QCheckBox("Replace (one label per sample)", self)
        self.replace_box.setToolTip("On: a key gives the selection that label instead of its current one. "
                                    "Off: a key adds the label. Set automatically from the data.")
        self._replace_user_set = False
        self.replace_box.clicked.connect(self._on_replace_clicked)
        self.search = QLineEdit(self)
        self.search.setObjectName("label-search")
        self.search.setPlaceholderText("Type a label name, Enter applies it (L)")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self._apply_search)
        self.completer = QCompleter([], self.search)
        self.completer.setCaseSensitivity(Qt.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchContains)
        self.search.setCompleter(self.completer)

        self.dev_on = QPushButton("Mark development set", self)
        self.dev_on.setToolTip("Add the selection to the development set (labelled cases Algorithm 1 maps clusters with)")
        self.dev_on.clicked.connect(lambda: self.set_dev(True))
        self.dev_off = QPushButton("Unmark", self)
        self.dev_off.clicked.connect(lambda: self.set_dev(False))
        self.undo_btn = QPushButton("Undo", self)
        self.undo_btn.setToolTip("Undo the last label edit (Ctrl+Z), also after a restart")
        self.undo_btn.clicked.connect(self.undo)
        self.redo_btn = QPushButton("Redo", self)
        self.redo_btn.setToolTip("Redo (Ctrl+Shift+Z)")
        self.redo_btn.clicked.connect(self.redo)

        dev_row = QHBoxLayout()
        dev_row.addWidget(self.dev_on)
        dev_row.addWidget(self.dev_off)
        hist_row = QHBoxLayout()
        hist_row.addWidget(self.undo_btn)
        hist_row.addWidget(self.redo_btn)

        # label editor
        self.editor = QGroupBox("Label set", self)
        self.label_list = QListWidget(self.editor)
        self.label_list.setMaximumHeight(90)
        add_b, ren_b, rem_b, col_b = (QPushButton(t, self.editor) for t in ("Add…", "Rename…", "Remove", "Colour…"))
        add_b.clicked.connect(self._add_dialog)
        ren_b.clicked.connect(self._rename_dialog)
        rem_b.clicked.connect(self._remove_dialog)
        col_b.clicked.connect(self._colour_dialog)
        eb = QHBoxLayout()
        for b in (add_b, ren_b, rem_b, col_b):
            eb.addWidget(b)
        el = QVBoxLayout(self.editor)
        el.addWidget(self.label_list)
        el.addLayout(eb)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.sel_info)
        lay.addWidget(self.toggle_box)
        lay.addWidget(self.search)
        lay.addWidget(self.replace_box)
        lay.addLayout(dev_row)
        lay.addLayout(hist_row)
        lay.addWidget(self.editor)
        lay.addStretch(1)

        selection.changed.connect(lambda _: self.update_state())
        model.labels_changed.connect(lambda _: self.update_state())
        model.dev_changed.connect(lambda _: self.update_state())
        model.history_changed.connect(self.update_history)
        model.label_set_changed.connect(self.rebuild)
        self.rebuild()

    # ------------------------------------------------------------------ building
    def rebuild(self) -> None:
        self._name_number_keys()
        for b in self.buttons.values():
            self.toggle_grid.removeWidget(b)
            b.deleteLater()
        self.buttons.clear()
        names = self.model.label_names()
        colours = self.model.label_colors()
        self.label_list.clear()
        for i, name in enumerate(names):
            c = label_colour(name, colours, i)
            key = f"{i + 1}: " if i < 9 else ""
            b = QPushButton(f"{key}{name}", self.toggle_box)
            b.setCheckable(True)
            b.setStyleSheet(f"QPushButton {{ border-left: 6px solid {c}; padding: 3px 6px; text-align: left }}"
                            f" QPushButton:checked {{ background: {c}; color: black }}")
            b.clicked.connect(lambda _=False, n=name: self.toggle(n))
            self.toggle_grid.addWidget(b, i // 2, i % 2)
            self.buttons[name] = b
            item = QListWidgetItem(name)
            item.setData(Qt.DecorationRole, QColor(c))
            self.label_list.addItem(item)
        from qtpy.QtCore import QStringListModel

        self.completer.setModel(QStringListModel(names, self.completer))
        if not self._replace_user_set:
            self.replace_box.setChecked(self.single_label_data())
        if not names:
            self.sel_info.setText("No labels yet: add one in the label set below.")
        self.update_state()
        self.update_history()

    def install_shortcuts(self, window) -> None:
        """Keys 1-9 apply the first nine labels anywhere in ``window`` (not while typing); L
        opens the type-to-search picker for any label."""
        act = QAction("Search labels", window)
        act.setShortcut(QKeySequence("L"))
        act.setShortcutContext(Qt.WindowShortcut)
        act.triggered.connect(self.focus_search)
        window.addAction(act)
        self.shortcut_actions.append(act)
        for i in range(9):
            act = QAction(f"Toggle label {i + 1}", window)
            act.setShortcut(QKeySequence(str(i + 1)))
            act.setShortcutContext(Qt.WindowShortcut)
            act.triggered.connect(lambda _=False, k=i: self.toggle_number(k + 1))
            window.addAction(act)
            self.shortcut_actions.append(act)
        self._name_number_keys()

    def _name_number_keys(self) -> None:
        """Keys 1-9 named after the labels they toggle now (Help › Keyboard shortcuts shows them)."""
        names = self.model.label_names()
        for k, act in enumerate(self.shortcut_actions[1:], start=1):  # [0] is the label search
            act.setText(f"Toggle label {k}" + (f": {names[k - 1]}" if k <= len(names) else " (none yet)"))

    # ------------------------------------------------------------------ state
    def update_state(self) -> None:
        ids = self.selection.ids
        labels = self.model.labels()
        n = len(ids)
        for name, b in self.buttons.items():
            have = sum(1 for i in ids if name in labels.get(i, ()))
            b.blockSignals(True)
            b.setChecked(n > 0 and have == n)
            b.blockSignals(False)
            b.setEnabled(n > 0)
            b.setToolTip(f"{have} of {n} selected have '{name}'" + (" (partly)" if 0 < have < n else ""))
            font = b.font()
            font.setItalic(0 < have < n)
            b.setFont(font)
        df = self.model.samples
        n_dev = int(df.loc[[i for i in ids if i in df.index], "dev"].sum()) if n else 0
        self.dev_on.setEnabled(n > 0)
        self.dev_off.setEnabled(n_dev > 0)
        if self.model.label_names():
            self.sel_info.setText(
                f"{n} selected · {n_dev} in development set · {int(df['dev'].sum())} in total"
                if n else "Select samples (table, scatter, clusters) to label them.")

    def update_history(self) -> None:
        self.undo_btn.setEnabled(self.model.can_undo())
        self.redo_btn.setEnabled(self.model.can_redo())

    # ------------------------------------------------------------------ actions
    def _guard(self, fn, *args):
        try:
            out = fn(*args)
        except Exception as exc:  # noqa: BLE001 - show it, keep the app alive
            QMessageBox.warning(self, "Label edit failed", f"{type(exc).__name__}: {exc}")
            return None
        self.edited.emit()
        return out

    def single_label_data(self) -> bool:
        """True when no sample carries two labels (then keys replace instead of adding)."""
        return all(len(v) <= 1 for v in self.model.labels().values())

    @property
    def replace_mode(self) -> bool:
        return self.replace_box.isChecked()

    def _on_replace_clicked(self, *_):
        self._replace_user_set = True

    def toggle(self, name: str) -> None:
        """Every selected sample has ``name`` -> remove it from all. Otherwise give it to those
        that lack it: as their only label in replace mode, added to theirs otherwise. Samples
        that already have it are never touched (a mixed selection loses nothing)."""
        ids = list(self.selection.ids)
        if not ids:
            self.update_state()
            return
        # from the database, not a cache: the decision must see the labels as they are now
        labels = self.model.project.labels(ids)
        lacking = [i for i in ids if name not in labels.get(i, ())]
        if not lacking:
            self._guard(self.model.set_label, ids, name, False)
        elif self.replace_mode:
            self._guard(self.model.replace_label, lacking, name)
        else:
            self._guard(self.model.set_label, lacking, name, True)

    def focus_search(self) -> None:
        self.search.setFocus(Qt.ShortcutFocusReason)
        self.search.selectAll()
        self.completer.complete()

    def _apply_search(self) -> None:
        text = self.search.text().strip()
        if not text:
            return
        names = self.model.label_names()
        match = next((n for n in names if n.lower() == text.lower()), None)
        if match is None:
            hits = [n for n in names if text.lower() in n.lower()]
            match = hits[0] if len(hits) == 1 else None
        if match is None:
            self.sel_info.setText(f"no single label matches '{text}'")
            return
        self.apply_label(match)
        self.search.clear()

    def apply_label(self, name: str) -> None:
        """Give the selection ``name`` (replace or add by the mode); never removes it."""
        ids = list(self.selection.ids)
        if not ids:
            return
        labels = self.model.project.labels(ids)
        lacking = [i for i in ids if name not in labels.get(i, ())]
        if lacking:
            fn = self.model.replace_label if self.replace_mode else \
                (lambda i, n: self.model.set_label(i, n, True))
            self._guard(fn, lacking, name)

    def toggle_number(self, k: int) -> None:
        names = self.model.label_names()
        if 1 <= k <= min(9, len(names)):
            self.toggle(names[k - 1])

    def set_dev(self, flag: bool) -> None:
        if self.selection.ids:
            self._guard(self.model.set_dev, list(self.selection.ids), flag)

    def undo(self):
        return self._guard(self.model.undo)

    def redo(self):
        return self._guard(self.model.redo)

    # label set editing (the dialogs call these; tests call them directly)
    def add_label(self, name: str, colour: str | None = None) -> None:
        name = name.strip()
        if not name:
            return
        if name in self.model.label_names():
            QMessageBox.information(self, "Label exists", f"A label named '{name}' already exists.")
            return
        self._guard(self.model.add_label, name, colour)

    def rename_label(self, old: str, new: str) -> None:
        if new.strip() and new != old:
            self._guard(self.model.rename_label, old, new.strip())

    def remove_label(self, name: str) -> None:
        self._guard(self.model.remove_label, name)

    def set_colour(self, name: str, colour: str) -> None:
        self._guard(self.model.set_label_color, name, colour)

    def _current_label(self) -> str | None:
        item = self.label_list.currentItem()
        return item.text() if item else None

    def _add_dialog(self):
        name, ok = QInputDialog.getText(self, "Add label", "Name of the new label:")
        if ok:
            self.add_label(name)

    def _rename_dialog(self):
        old = self._current_label()
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename label", f"New name for '{old}':", text=old)
        if ok:
            self.rename_label(old, new)

    def _remove_dialog(self):
        name = self._current_label()
        if name is None:
            return
        n = sum(1 for v in self.model.labels().values() if name in v)
        if QMessageBox.question(self, "Remove label",
                                f"Remove '{name}' from the label set and from its {n} samples?"
                                ) == QMessageBox.Yes:
            self.remove_label(name)

    def _colour_dialog(self):
        name = self._current_label()
        if name is None:
            return
        c = QColorDialog.getColor(QColor(self.model.label_colors().get(name) or "#4e79a7"), self,
                                  f"Colour of '{name}'")
        if c.isValid():
            self.set_colour(name, c.name())
