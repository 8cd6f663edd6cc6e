"""The job runner: progress after every step, cancel within one step, checkpoint and resume,
failures reported (not raised on the worker thread), runs recorded in the project."""
import threading

import numpy as np
import pytest

from core.jobs import CANCELLED, FAILED, FINISHED, Job, Progress, load_run_checkpoint
from core.methods.base import Method
from core.project import Project


class LeastSquares(Method):
    """A real (tiny) optimisation: gradient descent on ||Xw - y||^2, one step per batch."""

    name = "least-squares"

    def __init__(self, *, epochs: int = 3, batch_size: int = 4, lr: float = 0.05, seed: int = 0,
                 fail_at: int = -1):
        self.epochs, self.batch_size, self.lr, self.seed, self.fail_at = epochs, batch_size, lr, seed, fail_at

    def steps(self, data, *, resume=None):
        x, y = data
        n_steps = int(np.ceil(len(x) / self.batch_size))
        if resume is not None:
            self.load_state_dict(resume)
        else:
            self.w_ = np.zeros(x.shape[1])
            self.epoch_, self.step_ = 0, 0
        while self.epoch_ < self.epochs:
            order = np.random.default_rng([self.seed, self.epoch_]).permutation(len(x))
            while self.step_ < n_steps:
                idx = order[self.step_ * self.batch_size:(self.step_ + 1) * self.batch_size]
                r = x[idx] @ self.w_ - y[idx]
                self.w_ = self.w_ - self.lr * 2 * x[idx].T @ r / len(idx)
                self.step_ += 1
                g = self.epoch_ * n_steps + self.step_
                if g == self.fail_at:
                    raise FloatingPointError("loss became NaN at step %d" % g)
                loss = float(np.mean((x @ self.w_ - y) ** 2))
                end = self.step_ == n_steps
                if end:
                    self.epoch_, self.step_ = self.epoch_ + 1, 0
                yield Progress(epoch=self.epoch_ - end, step=n_steps if end else self.step_, global_step=g,
                               n_epochs=self.epochs, steps_per_epoch=n_steps, losses={"mse": loss},
                               epoch_end=end)
                if end:
                    break

    def state_dict(self):
        return {"params": self.get_params(), "w": self.w_.copy(), "epoch": self.epoch_, "step": self.step_}

    def load_state_dict(self, state):
        self.w_, self.epoch_, self.step_ = state["w"].copy(), state["epoch"], state["step"]
        return self


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    return x, x @ np.array([1.0, -2.0, 0.5])


def test_progress_every_step_and_run_recorded(tmp_path, problem):
    project = Project.create(tmp_path / "p")
    seen = []
    job = Job(LeastSquares(epochs=2), problem, project=project, on_progress=seen.append)
    job.run()
    assert job.status == FINISHED
    assert [p.global_step for p in seen] == list(range(1, 21))
    assert seen[-1].losses["mse"] < seen[0].losses["mse"]
    run = project.run(job.run_id)
    assert run["status"] == FINISHED and run["params"]["epochs"] == 2
    assert (project.run_dir(job.run_id) / "history.csv").exists()
    assert run["checkpoint"] == "runs/0001/checkpoint.pt"  # relative to the project folder
    assert load_run_checkpoint(project, run)["epoch"] == 2


def test_cancel_takes_effect_within_one_step_and_resume_continues(tmp_path, problem):
    project = Project.create(tmp_path / "p")
    gate = threading.Event()
    steps_seen = []

    def on_progress(p):
        steps_seen.append(p.global_step)
        if p.global_step == 3:
            job.cancel()
            gate.set()

    job = Job(LeastSquares(epochs=3), problem, project=project, on_progress=on_progress)
    job.start()
    assert gate.wait(30)
    job.wait(30)
    assert job.status == CANCELLED
    assert steps_seen == [1, 2, 3]  # no step after the one during which cancel was asked
    state = load_run_checkpoint(project, project.run(job.run_id))
    assert (state["epoch"], state["step"]) == (0, 3)

    resumed = Job(LeastSquares(epochs=3), problem, project=project, resume=state, run_id=job.run_id)
    resumed.run()
    assert resumed.history[0].global_step == 4
    straight = Job(LeastSquares(epochs=3), problem)
    straight.run()
    np.testing.assert_allclose(resumed.method.w_, straight.method.w_)


def test_failure_is_reported_with_its_message(tmp_path, problem):
    project = Project.create(tmp_path / "p")
    job = Job(LeastSquares(fail_at=5), problem, project=project)
    job.start()
    job.wait(30)
    assert job.status == FAILED
    assert "NaN at step 5" in project.run(job.run_id)["message"]
    with pytest.raises(FloatingPointError):
        Job(LeastSquares(fail_at=2), problem).run()
