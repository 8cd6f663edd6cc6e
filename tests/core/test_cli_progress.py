"""The CLI's progress bar learns the step count from the first report that knows it (PICA and
FixMatch first report loading the images, before any step count is known)."""
from core.cli._common import ProgressBar
from core.jobs.progress import Progress


def test_bar_total_arrives_after_a_loading_report(capsys):
    bar = ProgressBar("pica")
    bar(Progress(message="PICA: loading 52339 images"))
    assert bar.bar.total is None
    bar(Progress(epoch=0, step=1, global_step=1, n_epochs=4, steps_per_epoch=229, losses={"loss": 6.5}))
    assert bar.bar.total == 4 * 229 and bar.bar.n == 1
    bar.close()
    assert "/916" in capsys.readouterr().err
