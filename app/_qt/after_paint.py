"""Work that can wait until the main window has been painted once (start-up: the window shows
first, then checks and heavy imports run).

``after_first_paint(fn)``: while a main window waits for its first paint, ``fn`` is queued and
runs from the event loop right after that paint; otherwise (no window starting, or a panel made
on its own) it runs at once, as a plain call would."""
from __future__ import annotations

import traceback

from qtpy.QtCore import QEvent, QObject, QTimer

_waiting: set = set()   # id() of main windows not painted yet
_pending: list = []


def after_first_paint(fn) -> None:
    if _waiting:
        _pending.append(fn)
    else:
        fn()


def _run(fn) -> None:
    try:
        fn()
    except RuntimeError:  # its widget was deleted before the window painted
        pass
    except Exception:  # noqa: BLE001 - one deferred check must not stop the others
        traceback.print_exc()


def _release(key) -> None:
    _waiting.discard(key)
    if not _waiting:
        while _pending:
            fn = _pending.pop(0)
            QTimer.singleShot(0, lambda fn=fn: _run(fn))


class FirstPaintWatcher(QObject):
    """Event filter for the main window: its first paint (or its destruction) releases the
    queued work."""

    def __init__(self, window):
        super().__init__(window)
        self._key = id(self)
        _waiting.add(self._key)
        window.installEventFilter(self)
        key = self._key
        window.destroyed.connect(lambda *_: _release(key))

    def eventFilter(self, obj, ev) -> bool:
        # only a paint releases: work queued for a window closed before it painted must not
        # run on its half-destroyed views (napari/VTK set-up there crashes)
        if ev.type() == QEvent.Paint:
            obj.removeEventFilter(self)
            _release(self._key)
        return False


def reset() -> None:
    """Forget windows still waiting and drop their queued work (tests: one test's window must
    not defer the next test's panels)."""
    _waiting.clear()
    _pending.clear()
