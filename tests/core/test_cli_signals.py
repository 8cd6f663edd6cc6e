"""Ctrl-C / SIGTERM and SIGKILL of a ``latentmap train`` process (issue 10, item 5), for real: a
subprocess trains PICA on a tiny OrganAMNIST project and is signalled after its first checkpoint.

* SIGINT or SIGTERM: the run stops after the step under way, writes its checkpoint, is recorded
  ``cancelled``, the exit status is 0 and the exact resume command is printed; that command
  continues from the step after the last one done.
* SIGKILL: nothing can run in the process; the next open of the project finds the run's process
  gone and records it ``interrupted`` with the resume command; resuming works.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from core.jobs import load_run_checkpoint
from core.project import Project
from tests.core.tiny_project import PICA_TINY, organ_project

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a loaded 2-core runner; a quiet one needs ~20 s


def _start_training(project: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", "import sys; from core.cli import main; sys.exit(main())",
            "train", "pica", "--project", str(project), *PICA_TINY, "--set", "epochs=500", "--no-embed"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, project: Path) -> None:
    ckpt = project / "runs" / "0001" / "checkpoint.pt"
    t0 = time.monotonic()
    while not ckpt.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended early (rc {proc.returncode}):\n{out}\n{err[-2000:]}")
        if time.monotonic() - t0 > TIMEOUT_S:
            proc.kill()
            pytest.fail("no checkpoint within the time limit")
        time.sleep(0.2)


def _resume_to_the_end(project: Path, state: dict) -> dict:
    """Resume run 1 for one more epoch (in this process) and return its run row."""
    assert main(["train", "pica", "--project", str(project), "--resume", "1",
                 "--set", f"epochs={state['epoch'] + 1}", "--no-embed"]) == 0
    return Project.open(project).run(1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_cancels_checkpoints_and_prints_the_resume_command(tmp_path, sig):
    project = tmp_path / "organ"
    organ_project(project).close()
    proc = _start_training(project)
    _wait_for_checkpoint(proc, project)
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop after the signal")
    assert proc.returncode == 0, err[-2000:]
    resume = f"latentmap train pica --project {os.path.abspath(project)} --resume 1"
    assert "run 1: cancelled at epoch" in out and f"resume with: {resume}" in out, out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    p = Project.open(project)
    run = p.run(1)
    assert run["status"] == "cancelled" and resume in run["message"]
    state = load_run_checkpoint(p, run)
    hist = pd.read_csv(project / "runs" / "0001" / "history.csv")
    # the checkpoint holds the state after the last step reported: nothing done is lost
    assert int(hist["global_step"].max()) == int(state["global_step"])
    p.close()
    row = _resume_to_the_end(project, state)
    assert row["status"] == "finished"
    hist2 = pd.read_csv(project / "runs" / "0001" / "history.csv")
    assert hist2["global_step"].tolist() == list(range(1, len(hist2) + 1))  # no step lost or repeated


def test_sigkill_leaves_a_run_that_the_next_open_marks_interrupted(tmp_path):
    project = tmp_path / "organ"
    organ_project(project).close()
    proc = _start_training(project)
    _wait_for_checkpoint(proc, project)
    time.sleep(0.5)  # let it get into another step
    proc.kill()
    proc.wait(timeout=60)
    p = Project.open(project)
    run = p.run(1)
    assert run["status"] == "interrupted"
    assert f"latentmap train pica --project {os.path.abspath(project)} --resume 1" in run["message"]
    state = load_run_checkpoint(p, run)
    p.close()
    assert _resume_to_the_end(project, state)["status"] == "finished"
