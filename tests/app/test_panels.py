"""Clusters, training and evaluation panels on a project built from shared data (pytest-qt, Xvfb)."""
import numpy as np
import pytest

from tests.app.conftest import nonblank


def grab(widget) -> np.ndarray:
    from tests.app.test_main_window import _qimage_array

    return _qimage_array(widget.grab().toImage())


@pytest.fixture
def selection():
    from app.components import Selection

    return Selection()


def test_clusters_panel_lists_clusters_and_jumps_to_members(qtbot, model, selection):
    from app._qt.clusters_panel import ClustersPanel

    panel = ClustersPanel(model, selection)
    qtbot.addWidget(panel)
    panel.resize(700, 400)
    panel.show()
    qtbot.waitExposed(panel)
    ids, assign = model.project.load_clustering(model.active_clustering)
    assert panel.table.rowCount() == len(set(assign))
    sizes = [int(panel.table.item(r, 1).text()) for r in range(panel.table.rowCount())]
    assert sum(sizes) == len(ids)
    panel.select_members(0)
    expected = [s for s, a in zip(ids, assign) if a == panel.rows[0]["cluster"]]
    assert list(selection.ids) == expected
    assert nonblank(grab(panel))
    # a member strip draws the members it has; past them it is transparent, not a black bar
    strip = panel._strip(expected[:1]).toImage()
    assert strip.pixelColor(strip.width() - 1, strip.height() // 2).alpha() == 0
    assert any(strip.pixelColor(x, y).alpha() == 255 for x in range(0, 40, 4) for y in range(0, 40, 4))


def test_clusters_panel_algorithm1_override_undo_and_recluster(qtbot, model, selection):
    from app._qt.clusters_panel import ClustersPanel

    panel = ClustersPanel(model, selection)
    qtbot.addWidget(panel)
    result = panel.compute_algorithm1()
    assert result["vectors"]
    cluster = panel.rows[0]["cluster"]
    panel.override(cluster, "hyperplasia")
    row = next(r for r in panel.rows if r["cluster"] == cluster)
    assert row["manual"]["hyperplasia"] == 1.0
    assert "hyperplasia" in panel.table.item(0, 6).text()
    model.undo()
    row = next(r for r in panel.rows if r["cluster"] == cluster)
    assert row["manual"] is None

    job = panel.recluster(3)
    qtbot.waitUntil(lambda: job.state == "finished", timeout=60_000)
    qtbot.waitUntil(lambda: model.active_clustering.endswith("kmeans3"), timeout=10_000)
    assert panel.table.rowCount() == 3
    # re-cluster the current selection only
    some = [r["members"][0] for r in panel.rows]
    selection.select(panel.rows[0]["members"][:8] + some)
    job = panel.recluster(2, selection_only=True)
    qtbot.waitUntil(lambda: job.state == "finished", timeout=60_000)
    qtbot.waitUntil(lambda: "kmeans2-subset" in (model.active_clustering or ""), timeout=10_000)
    assert sum(r["size"] for r in panel.rows) == len(selection.ids)


def test_training_panel_form_start_cancel_and_resume(qtbot, model, selection):
    from app._qt.training_panel import TrainingPanel

    panel = TrainingPanel(model, selection)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    panel.select_method("deepdiffusion")
    assert {"epochs", "batch_size", "lr", "lam", "k", "out_dim"} <= set(panel.form.widgets)
    panel.form.set_values({"epochs": 50, "batch_size": 8, "out_dim": 16, "eval_every": 0, "device": "cpu"})
    steps = []
    job = panel.start()
    job.progress.connect(lambda p: steps.append(p.global_step) if p.losses else None)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=120_000)
    panel.cancel()
    assert panel.status_label.text().startswith("cancelling")
    qtbot.waitUntil(lambda: panel.qjob is None, timeout=60_000)
    reached = max(steps)
    assert "cancelled" in panel.status_label.text()
    assert reached <= steps[1] + 2  # stopped within a step of the request (signals are queued)
    assert {"loss: loss", "loss: fit", "loss: smooth"} <= set(panel.charts.plots), "one chart per loss term"
    assert nonblank(grab(panel))
    run = model.project.runs().iloc[-1]
    assert run["status"] == "cancelled" and run["checkpoint"]

    assert panel.resume_box.count() >= 1
    resumed_steps = []
    job = panel.start(resume_run=int(run["id"]))
    job.progress.connect(lambda p: resumed_steps.append(p.global_step) if p.losses else None)
    qtbot.waitUntil(lambda: len(resumed_steps) >= 1, timeout=120_000)
    panel.cancel()
    qtbot.waitUntil(lambda: panel.qjob is None, timeout=60_000)
    assert resumed_steps[0] == reached + 1
    # the curves from before the cancel stay, and history.csv grows instead of restarting
    xs = panel.charts.series["loss: fit"][0]
    assert min(xs) <= 1 and max(xs) >= resumed_steps[-1]
    import pandas as pd

    hist = pd.read_csv(model.project.run_dir(int(run["id"])) / "history.csv")
    steps_logged = hist.dropna(subset=["loss/fit"])["global_step"]
    assert set(range(1, resumed_steps[-1] + 1)) <= set(steps_logged) and steps_logged.is_unique


def test_evaluation_panel_shows_tables_and_curves(qtbot, model, selection):
    from app._qt.evaluation_panel import EvaluationPanel

    panel = EvaluationPanel(model, selection)
    qtbot.addWidget(panel)
    panel.resize(900, 450)
    panel.show()
    panel.split_box.setCurrentText("all")
    job = panel.evaluate()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=60_000)
    assert job.state == "finished"
    titles = [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    assert "Retrieval mAP" in titles and "Clustering" in titles
    assert panel.curve_box.count() >= 1
    assert nonblank(grab(panel))


def test_clusters_panel_over_clustering_head(qtbot, tmp_path, selection, one_torch_thread):
    """A PICA run's over-clustering head becomes a new clustering from the panel, in the
    background, and undo brings the run's K-cluster clustering back; a run without such a head
    (the adrenal project's DeepDiffusion) leaves the button disabled."""
    from app._qt.clusters_panel import ClustersPanel
    from app.components import ProjectModel
    from core.cli import main
    from tests.core.tiny_project import PICA_TINY, organ_project

    path = tmp_path / "organ"
    organ_project(path, n_train=24, n_val=6).close()
    assert main(["train", "pica", "--project", str(path), "--set", "epochs=1", *PICA_TINY]) == 0
    model = ProjectModel.open(path, author="tester")
    try:
        panel = ClustersPanel(model, selection)
        qtbot.addWidget(panel)
        head = model.active_clustering
        assert head.endswith("-head") and panel.over_head_btn.isEnabled()
        job = panel.cluster_from_over_head()
        qtbot.waitUntil(lambda: job.state == "finished", timeout=60_000)
        qtbot.waitUntil(lambda: model.active_clustering == "run-0001-head-over", timeout=10_000)
        ids, assign = model.project.load_clustering("run-0001-head-over")
        assert panel.table.rowCount() == len(set(assign.tolist()))
        assert sum(r["size"] for r in panel.rows) == len(ids) == 24 + 6
        assert panel.over_head_btn.isEnabled() and panel.recluster_btn.isEnabled()
        # the over-clusters merged into 2 (K from the spin box) by the head's probabilities, with
        # progress and Cancel next to the buttons while it runs; then both undone
        panel.k_spin.setValue(2)
        job = panel.merge()
        assert not panel.job_bar.isHidden() and panel.job_cancel_btn.isEnabled()
        qtbot.waitUntil(lambda: job.state == "finished", timeout=60_000)
        qtbot.waitUntil(lambda: model.active_clustering == "run-0001-head-over-merged2", timeout=10_000)
        assert panel.table.rowCount() == 2 and sum(r["size"] for r in panel.rows) == len(ids)
        assert model.project.clustering_info("run-0001-head-over-merged2")["params"]["soft"] is True
        assert panel.merge_btn.isEnabled() and panel.job_bar.isHidden() and panel.job_cancel_btn.isHidden()
        model.undo()
        assert model.active_clustering == "run-0001-head-over"
        model.undo()
        assert model.active_clustering == head
    finally:
        model.close()


def test_over_head_button_disabled_without_such_a_head(qtbot, model, selection):
    from app._qt.clusters_panel import ClustersPanel

    panel = ClustersPanel(model, selection)
    qtbot.addWidget(panel)
    assert not panel.over_head_btn.isEnabled()
    with pytest.raises(RuntimeError, match="no over-clustering head"):
        panel.cluster_from_over_head()
