"""The evaluation panel readable at the default window size (issue 14 item 2): overall figures
first, the chosen run beside the baseline first map with a plain verdict, per-class curves at
a legible size with the legend beside (not over) the axes, Table 1 rows defined."""
import numpy as np


def test_overall_first_comparison_and_legible_curves(qtbot, project_copy):
    from app._qt.main_window import MainWindow
    from app.components import ProjectModel
    from core.project import Project
    from core.workflows.baseline import baseline_steps

    project = Project.open(project_copy[0])
    for _ in baseline_steps(project):
        pass
    project.close()
    win = MainWindow(ProjectModel.open(project_copy[0], author="tester"))
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    panel = win.panels["Evaluation"]
    win.docks["Evaluation"].raise_()
    panel.split_box.setCurrentText("all")
    run = win.model.active_run
    job = panel.evaluate(run)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    assert job.state == "finished"
    text = panel.summary.text()
    assert f"run {run}" in text and "retrieval mAP" in text and "NMI" in text and "baseline" in text
    assert panel.summary.isVisible() and panel.summary.geometry().top() < panel.tabs.geometry().top()
    comp = panel.comparison
    assert set(comp["method"]) >= {"baseline-pointnet"} and comp["mAP"].notna().all()
    assert panel.tabs.tabText(0) == "Comparison" and panel.tabs.tabText(1) == "Curves"
    # the ROC and PR panels plus a separate legend column, drawn at a legible height
    panel.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel.canvas.isVisible(), timeout=3000)
    axes = panel.figure.get_axes()
    assert len(axes) == 3 and axes[-1].get_legend() is not None
    assert all(ax.get_legend() is None for ax in axes[:2])
    assert panel.canvas.height() >= 240
    titles = [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    assert any(t.startswith("Table 1") for t in titles)
    t1 = panel.tabs.widget(next(i for i, t in enumerate(titles) if t.startswith("Table 1")))
    from qtpy.QtWidgets import QLabel

    assert any("pooled within-class" in lab.text() for lab in t1.findChildren(QLabel))
    win.close()


def test_verdict_says_plainly_when_no_better_than_baseline():
    import pandas as pd

    from app.components.run_comparison import COLUMNS, verdict

    rows = [[3, "deepdiffusion", 100, 0.52, 0.510, 0.10, 0.4, 0.5, "c3"],
            [2, "baseline-pointnet", 100, 0.53, 0.515, 0.12, 0.4, 0.5, "c2"]]
    text, better = verdict(pd.DataFrame(rows, columns=COLUMNS), 3)
    assert better is False and "NO BETTER than the baseline" in text and "0.510 vs 0.515" in text
    rows[0][4] = 0.60
    text, better = verdict(pd.DataFrame(rows, columns=COLUMNS), 3)
    assert better is True and np.isfinite(0.6)
