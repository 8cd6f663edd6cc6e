"""The training view at the default window size (issue 14 item 1): one chart per quantity, each
with its own axis and a legible size; the form scrolls; warnings are listed; the view detaches.
The progress records fed here have the shape DeepDiffusion / PICA report (losses of very
different ranges, a cluster count next to NMI in [0, 1], a warning)."""
import pytest

from core.jobs import Progress


@pytest.fixture
def window(qtbot, project_copy):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel

    win = MainWindow(ProjectModel.open(project_copy[0], author="tester"))
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    # the method form loads after the first paint, and then shows the active run's curves:
    # wait for it, so the records fed below are not cleared by it
    qtbot.waitUntil(lambda: win.panels["Training"].form is not None, timeout=20000)
    yield win
    win.close()


def _feed(panel, n_steps=12):
    for g in range(1, n_steps + 1):
        metrics = {}
        if g % 4 == 0:
            metrics = {"nmi": 0.1 * g / 4, "purity": 0.5 + 0.02 * g, "n_used_clusters": 20 + g // 4,
                       "effective_rank": 3.0 + g}
            if g == 8:
                metrics["warnings"] = ["embedding collapsed: effective rank 1.02"]
        panel._on_progress(Progress(epoch=(g - 1) // 4, step=(g - 1) % 4 + 1, global_step=g, n_epochs=3,
                                    steps_per_epoch=4, losses={"loss": 100.0 / g, "fit": 99.0 / g,
                                                               "smooth": 0.01 * g},
                                    metrics=metrics, samples_per_s=12.5, eta_s=30.0))


def test_one_chart_per_quantity_legible_at_default_size(qtbot, window):
    dock = window.docks["Training"]
    dock.raise_()
    panel = window.panels["Training"]
    panel.select_method("deepdiffusion")
    _feed(panel)
    qtbot.wait(50)
    keys = {"loss: loss", "loss: fit", "loss: smooth", "nmi", "purity", "n_used_clusters", "effective_rank"}
    assert set(panel.charts.plots) == keys  # the warnings entry is text, not a chart
    for key, plot in panel.charts.plots.items():
        assert plot.height() >= 120 and plot.width() >= 200, (key, plot.size())
        # each chart's own y range covers its own values (no shared flattened axis)
        ys = panel.charts.series[key][1]

        def fits(plot=plot, ys=ys):
            lo, hi = plot.getPlotItem().viewRange()[1]
            return lo <= min(ys) and hi >= max(ys) and hi - lo < 2 * (max(ys) - min(ys)) + 1e-6

        qtbot.waitUntil(fits, timeout=3000)
    assert "collapsed" in panel.warning_label.text() and panel.warning_label.isVisible()
    # the status is not cut: the label wraps
    panel.status_label.setText("embedding all samples with run 12 and projecting them (PCA, UMAP)")
    assert panel.status_label.wordWrap()
    # the hyperparameter form scrolls (every parameter reachable), and shows several rows
    form_area = panel.form_area
    assert form_area.widget() is panel.form and form_area.widgetResizable()
    assert form_area.viewport().height() >= 90


def test_detach_gives_a_large_window_and_docks_back(qtbot, window):
    panel = window.panels["Training"]
    dock = window.docks["Training"]
    panel.toggle_detached()
    qtbot.waitUntil(dock.isFloating, timeout=2000)
    screen = dock.screen().availableGeometry()
    assert dock.width() >= 0.8 * screen.width() and dock.height() >= 0.8 * screen.height()
    assert panel.charts.columns_for(panel.charts.width()) >= 3 or screen.width() < 1000
    panel.toggle_detached()
    assert not dock.isFloating()


def test_resumed_run_shows_history_from_before_the_cancel(qtbot, model, tmp_path):
    from app._qt.training_panel import TrainingPanel, history_series

    run = model.project.create_run("deepdiffusion", {})
    path = model.project.run_dir(run) / "history.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("epoch,step,global_step,samples_per_s,loss/fit,metric/nmi\n"
                    "0,1,1,10,5.0,\n0,2,2,10,4.0,0.3\n")
    rows = history_series(path)
    assert ("loss: fit", 1.0, 5.0) in rows and ("nmi", 2.0, 0.3) in rows
    panel = TrainingPanel(model)
    qtbot.addWidget(panel)
    panel._reset_curves(run)
    assert panel.charts.series["loss: fit"] == ([1.0, 2.0], [5.0, 4.0])


def test_idle_panel_shows_the_active_runs_curves(qtbot, model):
    """A researcher reopening a project sees the finished run's training curves (history.csv),
    and they follow the active run."""
    from app._qt.training_panel import TrainingPanel

    run = model.project.create_run("deepdiffusion", {})
    path = model.project.run_dir(run) / "history.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("epoch,step,global_step,samples_per_s,loss/fit,metric/val_map_balanced\n"
                    "0,1,1,10,5.0,\n0,2,2,10,4.0,0.61\n")
    model.project.update_run(run, status="finished", finished=True)
    panel = TrainingPanel(model)
    qtbot.addWidget(panel)
    panel._load_method()
    before = model.active_run
    assert before != run
    model.active_run = run
    assert panel.charts.series["loss: fit"] == ([1.0, 2.0], [5.0, 4.0])
    assert panel.charts.series["val_map_balanced"] == ([2.0], [0.61])
    assert f"run {run} (deepdiffusion, finished)" in panel.status_label.text()
