"""Team labelling: every few seconds the window's project model asks the store whether another
session changed the project, and reloads what did (labels, label set, undo state) without a
restart. One small query per poll, on SQLite and PostgreSQL alike."""
from __future__ import annotations

from qtpy.QtCore import QTimer

POLL_MS = 3000


def poll_changes(window, interval_ms: int = POLL_MS) -> QTimer:
    timer = QTimer(window)
    timer.setInterval(int(interval_ms))

    def tick():
        model = getattr(window, "model", None)
        if model is None or not hasattr(model, "poll_external_changes"):
            return
        try:
            model.poll_external_changes()
        except Exception:  # noqa: BLE001 - a lost connection must not spam dialogs; next tick retries
            pass

    timer.timeout.connect(tick)
    timer.start()
    window._change_poll_timer = timer
    return timer
