"""Keys a focused widget takes before the window's shortcuts do.

The window binds plain keys (1-9 label, L searches labels, Esc clears the selection). A widget
that gives some of them another meaning while it has the focus (the scatter's L = lasso, the
gallery's 1-9 = label the picked tiles) must claim them: a second QShortcut on the same key
would make both ambiguous (Qt fires neither). Accepting the ShortcutOverride event keeps the key
from the shortcut map and delivers it to the widget as a key press.
"""
from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt


class ClaimKeys(QObject):
    """Event filter on ``widget``: ``lookup(key_event)`` returns what a plain key press does
    there, or None to leave the key to the window."""

    def __init__(self, widget, lookup):
        super().__init__(widget)
        self._widget = widget
        self._lookup = lookup
        widget.installEventFilter(self)

    def eventFilter(self, obj, ev):
        if obj is self._widget and ev.type() in (QEvent.ShortcutOverride, QEvent.KeyPress) \
                and not (ev.modifiers() & ~Qt.KeypadModifier):
            fn = self._lookup(ev)
            if fn is not None:
                ev.accept()
                if ev.type() == QEvent.KeyPress:
                    fn()
                return True
        return False
