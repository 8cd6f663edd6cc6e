"""Help › Keyboard shortcuts: every key the window answers, read from the live actions (menus,
the label keys) and the scatter plot's own keys, so the list cannot drift from what works."""
from __future__ import annotations

import html

from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QAction, QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

def shortcut_rows(window) -> list[tuple[str, str, str]]:
    """(where, key, what) for every shortcut of ``window``, window-wide keys first."""
    rows, seen = [], set()
    for act in window.findChildren(QAction):
        key = act.shortcut().toString(QKeySequence.NativeText)
        text = act.text().replace("&", "").rstrip("…").strip()
        if key and act.isVisible() and (key, text) not in seen:
            seen.add((key, text))
            rows.append(("Window", key, text))
    scatter = getattr(window, "scatter_view", None)
    for k, (what, _) in getattr(scatter, "plot_keys", {}).items():
        rows.append(("Latent scatter (when it has the focus)", QKeySequence(k).toString(QKeySequence.NativeText),
                     what))
    from app._qt.gallery import GalleryView

    if window.findChildren(GalleryView):
        rows.append(("Gallery (when its grid has the focus and tiles are picked)", "1-9",
                     "Give the picked tiles that label (not the whole selection)"))
    return rows


def show_shortcuts(window) -> QDialog:
    dlg = QDialog(window)
    dlg.setWindowTitle("Keyboard shortcuts")
    dlg.resize(560, 520)
    lay = QVBoxLayout(dlg)
    body = QTextBrowser(dlg)
    parts, where_now = [], None
    for where, key, what in shortcut_rows(window):
        if where != where_now:
            parts.append(f"<tr><th colspan=2 align=left><br>{html.escape(where)}</th></tr>")
            where_now = where
        parts.append(f"<tr><td><b>{html.escape(key)}</b>&nbsp;&nbsp;</td><td>{html.escape(what)}</td></tr>")
    body.setHtml("<table>" + "".join(parts) + "</table><p>Digit keys and L do not act while you type "
                 "in a text field.</p>")
    lay.addWidget(body)
    buttons = QDialogButtonBox(QDialogButtonBox.Close, dlg)
    buttons.rejected.connect(dlg.reject)
    lay.addWidget(buttons)
    dlg.show()
    return dlg
