"""Table 1 protocol on a small case checked by hand (see the comments for the arithmetic)."""
from __future__ import annotations

import numpy as np
import pytest

from core.metrics.report import write_retrieval_report
from core.metrics.table1 import table1


def _case():
    ang = np.deg2rad([0, 10, 20, 90, 100, 180.0])
    return np.c_[np.cos(ang), np.sin(ang)], np.array([0, 0, 0, 1, 1, 1])


def test_hand_checked_query():
    emb, lab = _case()
    r = table1(emb, lab, class_names=["A", "B"])
    q = {row["index"]: row for row in r.per_query}
    # query 3 (90 deg, class B): others by distance 100 (B), 20, 10 (A), then 0 (A) tied with 180 (B)
    assert q[3]["k_full"] == 5                         # the tie enters together
    assert q[3]["accuracy"] == pytest.approx(2 / 5)    # TP 2, FP 3, TN 0 at k = 5
    assert q[3]["f1"] == pytest.approx(2 / 3)          # best at k = 1: 2*1 / (1 + 2)
    assert q[3]["ap"] == pytest.approx((1 / 1 + 2 / 5) / 2)
    assert q[3]["roc_auc"] == pytest.approx(3.5 / 6)   # positive at distance 1 ties one negative
    assert q[3]["pr_auc"] == pytest.approx(0.5 + 0.5 * (0.4 + 1 / 3) / 2)
    # every class-A query retrieves its class first
    for i in (0, 1, 2):
        assert q[i]["ap"] == 1.0 and q[i]["accuracy"] == 1.0 and q[i]["k_full"] == 2
    t = r.table
    assert t["mean accuracy"]["B"] == pytest.approx((0.4 + 1 + 1) / 3)
    assert t["max accuracy"]["B"] == 1.0
    assert t["mean ap"]["overall"] == pytest.approx(np.mean([row["ap"] for row in r.per_query]))
    assert t["max roc_auc"]["overall"] == pytest.approx(1.0)   # support-weighted mean of maxima
    assert set(r.curves) == {"A", "B"}


def test_report_files(tmp_path):
    emb, lab = _case()
    out = write_retrieval_report(tmp_path, emb, lab, class_names=["A", "B"], title="toy")
    names = {p.name for p in out["files"]}
    assert {"retrieval_map.csv", "retrieval_map.md", "table1.csv", "table1.md", "roc_curves.png",
            "pr_curves.png", "cosine_distance.png"} <= names
    assert (tmp_path / "roc_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "Mean AP" in (tmp_path / "table1.md").read_text()
