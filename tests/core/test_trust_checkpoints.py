"""Nothing in a project folder runs code, and a project folder can move (issue 10, items 2, 3, 5).

* A planted pickle as a run's checkpoint (a ``__reduce__`` that would write a file) is refused
  with a clear message on every path that reads run checkpoints: ``latentmap embed``,
  ``train --resume``, ``finetune --set init_run=N``; the file is never written.
* Checkpoints are recorded relative to the project; a copied project resumes, embeds and
  fine-tunes from another working directory, also with records written the old way (absolute
  paths of the former location, or paths relative to the directory a command ran in).
* A recorded path leading outside the project (or a link out of it) is refused.
* A ``running`` run whose process is gone is ``interrupted`` when the project opens.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import main
from core.jobs import CheckpointError, load_checkpoint, load_run_checkpoint, save_checkpoint
from core.jobs.checkpoint import resolve_checkpoint
from core.project import Project
from tests.core.tiny_project import PICA_TINY, organ_project


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks: see ``one_torch_thread``."""


class Planted:
    """What an attacker would put in a shared project: unpickling calls ``open(marker, 'w')``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny project with one finished PICA run (2 epochs), trained through the CLI."""
    path = tmp_path_factory.mktemp("trained") / "organ"
    organ_project(path).close()
    assert main(["train", "pica", "--project", str(path), "--set", "epochs=2", *PICA_TINY]) == 0
    return path


def _copy(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def _plant(project_path: Path, marker: Path) -> None:
    ckpt = project_path / "runs" / "0001" / "checkpoint.pt"
    torch.save({"params": {}, "model": Planted(marker)}, ckpt)
    # the pickle really is armed: an unrestricted load would run it
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("command", ["embed", "resume", "finetune-init"])
def test_planted_pickle_never_runs(trained, tmp_path, capsys, command):
    proj = _copy(trained, tmp_path / "shared")
    marker = tmp_path / "PWNED"
    _plant(proj, marker)
    argv = {"embed": ["embed", "--project", str(proj), "--run", "1"],
            "resume": ["train", "pica", "--project", str(proj), "--resume", "1", "--set", "epochs=3"],
            "finetune-init": ["finetune", "cluster-head", "--project", str(proj), "--set", "init_run=1",
                              "--set", "epochs=1", "--set", "batch_size=4", "--set", "device=cpu"]}[command]
    rc = main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc != 0
    assert not marker.exists(), "code from the project folder ran"
    assert "refused to load this checkpoint" in text and "checkpoint.pt" in text, text
    assert "Traceback" not in text


def test_checkpoint_loader_refuses_code_but_reads_old_numpy_checkpoints(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"x": Planted(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused to load.*asks for \S*open"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # written before checkpoints kept to plain data: numpy arrays and scalars still load
    torch.save({"w": np.arange(3.0), "rng": np.random.get_state(), "n": np.int64(4)}, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    np.testing.assert_array_equal(old["w"], [0.0, 1.0, 2.0])
    # what save_checkpoint writes loads without any allowance
    save_checkpoint(tmp_path / "new.pt", {"w": np.arange(3.0), "rng": np.random.get_state(), "n": np.int64(4),
                                          "p": tmp_path, "names": np.array(["a", "bb"])})
    raw = torch.load(tmp_path / "new.pt", weights_only=True)
    assert isinstance(raw, dict)
    new = load_checkpoint(tmp_path / "new.pt")
    np.random.set_state(new["rng"])
    assert new["n"] == 4 and new["p"] == str(tmp_path) and list(new["names"]) == ["a", "bb"]
    with pytest.raises(TypeError, match=r"checkpoint entry state\['f'\]"):
        save_checkpoint(tmp_path / "bad.pt", {"f": lambda: 0})


def test_moved_project_resumes_embeds_and_finetunes(trained, tmp_path, monkeypatch, capsys):
    run = Project.open(trained).run(1)
    assert run["checkpoint"] == "runs/0001/checkpoint.pt"
    moved = _copy(trained, tmp_path / "elsewhere" / "copy")
    other = tmp_path / "cwd"
    other.mkdir()
    monkeypatch.chdir(other)
    assert main(["train", "pica", "--project", str(moved), "--resume", "1", "--set", "epochs=3",
                 "--no-embed"]) == 0
    assert Project.open(moved).run(1)["status"] == "finished"
    assert main(["embed", "--project", str(moved), "--run", "1"]) == 0
    assert main(["finetune", "cluster-head", "--project", str(moved), "--set", "init_run=1", "--set", "epochs=1",
                 "--set", "batch_size=4", "--set", "device=cpu", "--no-embed"]) == 0
    p = Project.open(moved)
    ft = p.run(2)
    assert ft["status"] == "finished" and ft["checkpoint"] == "runs/0002/checkpoint.pt"
    assert Path(ft["params"]["init_checkpoint"]).parent == (moved / "runs" / "0001").resolve()
    out = capsys.readouterr().out
    assert str(trained) not in out  # nothing read from the original folder


def test_old_records_absolute_or_cwd_relative_still_resolve(trained, tmp_path, monkeypatch):
    moved = _copy(trained, tmp_path / "moved")
    p = Project.open(moved)
    # as recorded before: the absolute path of the original folder ...
    p.update_run(1, checkpoint=str(Path(trained).resolve() / "runs" / "0001" / "checkpoint.pt"))
    assert resolve_checkpoint(moved, p.run(1)["checkpoint"]) == (moved / "runs/0001/checkpoint.pt").resolve()
    # ... or relative to the directory a command ran in
    p.update_run(1, checkpoint="projs/skill/runs/0001/checkpoint.pt")
    assert load_run_checkpoint(p, p.run(1))["epoch"] == 2
    monkeypatch.chdir(tmp_path)
    p.close()
    assert main(["embed", "--project", str(moved), "--run", "1"]) == 0


def test_checkpoint_outside_the_project_is_refused(trained, tmp_path):
    proj = _copy(trained, tmp_path / "p")
    outside = tmp_path / "outside.pt"
    shutil.copy(proj / "runs/0001/checkpoint.pt", outside)
    p = Project.open(proj)
    p.update_run(1, checkpoint=str(outside))
    with pytest.raises(CheckpointError, match="outside the project folder"):
        load_run_checkpoint(p, p.run(1))
    p.update_run(1, checkpoint="../outside.pt")
    with pytest.raises(CheckpointError, match="outside the project folder"):
        load_run_checkpoint(p, p.run(1))
    # a link from inside the project to a file outside it
    link = proj / "runs/0001/checkpoint.pt"
    link.unlink()
    link.symlink_to(outside)
    p.update_run(1, checkpoint="runs/0001/checkpoint.pt")
    with pytest.raises(CheckpointError, match="outside the project folder"):
        load_run_checkpoint(p, p.run(1))


def test_run_of_a_killed_process_becomes_interrupted(tmp_path):
    from core.jobs.recovery import process_identity

    p = Project.create(tmp_path / "p")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = process_identity()
    rows = {}
    for who, (pid, host) in {"dead": (dead.pid, me["host"]), "alive": (me["pid"], me["host"]),
                             "other-host": (dead.pid, "another-machine")}.items():
        rid = p.create_run("pica", {"epochs": 3})
        with p.transaction() as c:
            c.execute("UPDATE runs SET pid=?, host=?, process_started=? WHERE id=?",
                      (pid, host, me["process_started"] if who == "alive" else 1.0, rid))
        rows[who] = rid
    p.update_run(rows["dead"], checkpoint="runs/0001/checkpoint.pt")
    p.close()
    again = Project.open(tmp_path / "p")
    assert again.run(rows["dead"])["status"] == "interrupted"
    msg = again.run(rows["dead"])["message"]
    assert f"latentmap train pica --project {os.path.abspath(tmp_path / 'p')} --resume {rows['dead']}" in msg
    assert again.run(rows["alive"])["status"] == "running"
    assert again.run(rows["other-host"])["status"] == "running"


def test_resume_refuses_another_methods_run(trained, tmp_path, capsys):
    proj = _copy(trained, tmp_path / "p")
    rc = main(["train", "deepcluster", "--project", str(proj), "--resume", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "run 1 was trained with pica, not deepcluster" in err
    assert f"latentmap train pica --project {os.path.abspath(proj)} --resume 1" in err


def _points_project(path, n: int = 12):
    """VesselMNIST3D masks with 128-point clouds (both classes), through the project store."""
    from core.preprocess.shapes import mask_to_points
    from core.project import SampleRecord
    from tests.conftest import DATA, need

    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    y = d["train_labels"].ravel()
    pick = np.r_[np.flatnonzero(y == 0)[: n - 4], np.flatnonzero(y == 1)[:4]]
    p = Project.create(path)
    p.save_sample_array("masks.npy", (d["train_images"][pick] > 0).astype(np.uint8))
    ids = [f"vessel/train/{i:05d}" for i in pick]
    names = ["vessel", "aneurysm"]
    p.add_samples([SampleRecord(id=s, dataset="vesselmnist3d", kind="mask", split="train", shape=(28, 28, 28),
                                data_file="masks.npy", data_index=k, labels=[names[y[i]]])
                   for k, (s, i) in enumerate(zip(ids, pick))])
    pts = np.stack([mask_to_points(d["train_images"][i] > 0, 128, seed=int(i)) for i in pick]).astype(np.float32)
    p.arrays.save("points", pts, ids=np.array(ids))
    return p


def test_collapsed_embedding_is_never_made_active(tmp_path, capsys):
    """A run whose embedding collapsed (here: DeepDiffusion's output layer zeroed, so every
    shape maps to the same vector) is recorded 'collapsed', says why, and the project keeps its
    active run; embedding it again is refused."""
    from core.methods.base import EmbeddingCollapsed
    from core.workflows.apply import apply_run
    from core.workflows.runs import load_run_method

    path = tmp_path / "shapes"
    _points_project(path).close()
    # memory_init=batch: one epoch from the reference's eval-mode memory is itself collapsed
    dd = ["--set", "epochs=1", "--set", "memory_init=batch", "--set", "batch_size=4", "--set", "k=3",
          "--set", "out_dim=16", "--set", "eval_every=0", "--set", "device=cpu"]
    assert main(["train", "deepdiffusion", "--project", str(path), *dd]) == 0
    assert main(["train", "deepdiffusion", "--project", str(path), *dd, "--no-embed"]) == 0
    p = Project.open(path)
    assert p.meta("active_run") == "1"
    method = load_run_method(p.run(2), p)
    with torch.no_grad():
        method.encoder_.head[-1].weight.zero_()
    with pytest.raises(EmbeddingCollapsed, match="collapsed the embedding: all 12 rows are nearly the same point"):
        apply_run(p, method, 2)
    run = p.run(2)
    assert run["status"] == "collapsed" and "not made the active run" in run["message"]
    assert p.meta("active_run") == "1" and not p.has_embedding(2)
    p.close()
    capsys.readouterr()
    assert main(["embed", "--project", str(path), "--run", "2"]) == 2
    assert "run 2 collapsed: training collapsed the embedding" in capsys.readouterr().err
