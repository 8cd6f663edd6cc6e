"""A banner across the top of the latent scatter when the active embedding is collapsed
(every sample at nearly the same point, on one line, or all pointing the same way): the map
and the neighbours of such a run say nothing, and the user must see that before reading them.

The check is ``core.metrics.collapse.embedding_health`` on the active run's features (a seeded
subsample of at most 5,000 rows on large projects: collapse is a property of the whole cloud,
and the subsample keeps the check well under a second)."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QLabel

MAX_ROWS = 5000


def active_embedding_health(model):
    """``EmbeddingHealth`` of the model's active embedding, or None without one."""
    from core.metrics.collapse import embedding_health

    emb = model.embedding()
    if emb is None or emb[1] is None:
        return None
    x = np.asarray(emb[1])
    if len(x) > MAX_ROWS:
        x = x[np.random.default_rng(0).choice(len(x), MAX_ROWS, replace=False)]
    return embedding_health(x)


class HealthBanner(QLabel):
    """Child of ``host`` (the scatter), kept across its top edge; hidden while healthy."""

    def __init__(self, model, host, parent=None):
        super().__init__(host if parent is None else parent)
        self.model = model
        self.host = host
        self.health = None
        self.setObjectName("collapse-banner")
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignCenter)
        self.setStyleSheet("QLabel#collapse-banner { background: #b00020; color: white; font-weight: bold;"
                           " padding: 6px; border-radius: 3px }")
        self.setAttribute(Qt.WA_TransparentForMouseEvents, True)
        self.hide()
        host.installEventFilter(self)
        model.run_changed.connect(lambda *_: self.refresh())
        model.samples_changed.connect(lambda *_: self.refresh())
        from app._qt.after_paint import after_first_paint

        after_first_paint(self.refresh)  # the check imports scipy: after the window shows

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.host and ev.type() == QEvent.Resize:
            self._place()
        return False

    def _place(self) -> None:
        w = max(200, self.host.width() - 24)
        self.setFixedWidth(w)
        self.adjustSize()
        self.move(12, 40)
        self.raise_()

    def refresh(self) -> None:
        try:
            self.health = active_embedding_health(self.model)
        except Exception:  # noqa: BLE001 - a check that cannot run must not break the scatter
            self.health = None
        h = self.health
        if h is None or not h.collapsed:
            self.hide()
            return
        run = self.model.run_name() or "the active run"
        self.setText(f"⚠ The embedding of {run} has collapsed: {h.reason}. Its map and neighbours "
                     f"carry no information (effective rank {h.effective_rank:.2f}, mean cosine "
                     f"{h.mean_cosine:.4f}). Retrain (e.g. with a lower learning rate) or use the baseline.")
        self._place()
        self.show()
