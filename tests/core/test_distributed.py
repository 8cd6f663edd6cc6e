"""Data-parallel training (torch.distributed, Gloo on this CPU): 2 processes end with the same
parameters as 1 process with the same global batch (float64), also as two "nodes" on localhost;
a cancel on one rank stops every rank at the same step, and rank 0's checkpoint resumes on 1.

Every run is a real process tree started here (``torch.distributed.run``), bounded in time and
talking over the loopback interface only.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import DATA, ROOT, need

TIMEOUT = 600
#: PICA with one global batch of 12 per head: 2 steps an epoch (one per head), 2 epochs
PICA = {"batch_size": 12, "epochs": 2, "n_repeat": 2, "lr": 0.01, "eval_samples": 4, "device": "cpu",
        "n_clusters": 4, "n_overclusters": 8, "head_schedule": "alternate"}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", MASTER_ADDR="127.0.0.1",
               PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None), env.pop("RANK", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_args(method, out, params, run=None):
    args = ["-m", "tests.core.dist_worker", method, str(out), json.dumps(params)]
    return args + ([json.dumps(run)] if run else [])


def _torchrun(*launcher_args):
    return [sys.executable, "-m", "torch.distributed.run", *launcher_args]


def _check(proc_or_procs):
    procs = proc_or_procs if isinstance(proc_or_procs, list) else [proc_or_procs]
    for p in procs:
        out = (p.stdout or "") + (p.stderr or "")
        # the head too: a rank's own message comes before the launcher's long traceback
        assert p.returncode == 0, out if len(out) < 6000 else out[:2500] + "\n[...]\n" + out[-3500:]


def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _one(tmp, name, params=PICA, run=None):
    out = tmp / f"{name}.npz"
    _check(_run([sys.executable, *_worker_args("pica", out, params, run)]))
    return out


def _two(tmp, name, params=PICA, run=None):
    out = tmp / f"{name}.npz"
    _check(_run(_torchrun("--nproc-per-node", "2", "--standalone",
                          *_worker_args("pica", out, params, run))))
    return out


def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    need(DATA / "organamnist")
    tmp = tmp_path_factory.mktemp("dist")
    return tmp, _load(_one(tmp, "one"))


def test_pica_two_processes_equal_one_process(one_process):
    tmp, ref = one_process
    two = _load(_two(tmp, "two"))
    assert _max_diff(ref, two) < 1e-7
    steps = json.load(open(tmp / "two.npz.json"))
    one = json.load(open(tmp / "one.npz.json"))
    assert steps["steps"] == one["steps"] == [1, 2, 3, 4]
    np.testing.assert_allclose([l["loss"] for l in steps["losses"]],
                               [l["loss"] for l in one["losses"]], rtol=1e-9)


def test_pica_instance_term_two_processes_equal_one_process(tmp_path):
    """The instance term's negatives are the global batch's rows on every rank (its projections
    are gathered), so two processes still end where one does."""
    need(DATA / "organamnist")
    params = {**PICA, "instance_weight": 1.0, "epochs": 1}
    one = json.load(open(str(_one(tmp_path, "one", params)) + ".json"))
    two = json.load(open(str(_two(tmp_path, "two", params)) + ".json"))
    assert _max_diff(_load(tmp_path / "one.npz"), _load(tmp_path / "two.npz")) < 1e-7
    assert all("instance" in l for l in two["losses"])
    np.testing.assert_allclose([l["instance"] for l in two["losses"]],
                               [l["instance"] for l in one["losses"]], rtol=1e-9)


def test_pica_two_nodes_on_localhost_equal_one_process(one_process):
    tmp, ref = one_process
    out = tmp / "nodes.npz"
    port = _free_port()
    # The rendezvous store is hosted here, not by one of the two agents: an agent that hosts it
    # exits once its worker is done, and the other agent's next poll of the store then fails
    # (RendezvousConnectionError, exit 1; pytorch/pytorch#69197) although training finished.
    # A store that outlives both nodes is how a cluster runs it (a head node or etcd).
    import torch.distributed as tdist

    store = tdist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # noqa: F841
    cmd = _torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "latentmap-test",
                    "--rdzv-conf", "is_host=false", *_worker_args("pica", out, PICA))
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        for p in procs:
            p.stdout_text = p.communicate(timeout=TIMEOUT)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p in procs:
        assert p.returncode == 0, p.stdout_text[-3000:]
    assert _max_diff(ref, _load(out)) < 1e-7


def test_cancel_on_one_rank_stops_all_and_resumes_on_one_process(one_process):
    tmp, ref = one_process
    ckpt = tmp / "cancelled.pt"
    _two(tmp, "cancelled", run={"checkpoint": str(ckpt), "cancel_rank": 1, "cancel_step": 2})
    info = json.load(open(tmp / "cancelled.npz.json"))
    assert info["status"] == "cancelled" and info["steps"] == [1, 2]   # rank 0 stopped there too
    assert ckpt.exists()
    # the parameters move in steps 3-4 (Adam at lr 0.01) far more than the tolerances here
    assert _max_diff(ref, _load(tmp / "cancelled.npz")) > 1e-3
    resumed = _load(_one(tmp, "resumed", run={"resume": str(ckpt)}))
    assert json.load(open(tmp / "resumed.npz.json"))["steps"] == [3, 4]
    assert _max_diff(ref, resumed) < 1e-7


def test_cli_nproc_2_on_a_postgresql_project(tmp_path):
    """``latentmap import`` into a PostgreSQL project, ``latentmap train pica --nproc 2``: rank 0
    records the run, its checkpoint and the embedding; the other rank writes nothing."""
    from PIL import Image

    from core.project import Project
    from tests.pg_cluster import PgCluster, find_bin

    if not find_bin("initdb"):
        pytest.skip("PostgreSQL server binaries not found: `make setup` as root installs them")
    d = np.load(need(DATA / "organamnist" / "organamnist.npz"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(24):
        Image.fromarray(d["train_images"][i]).save(frames / f"organ{i:02d}.png")
    with PgCluster() as server:
        url = f"{server.new_database()}?folder={tmp_path / 'proj'}"
        cli = [sys.executable, "-m", "core.cli"]
        out = _run(cli + ["import", str(frames), "--project", url])
        assert out.returncode == 0, out.stdout + out.stderr
        sets = ["batch_size=12", "epochs=1", "n_repeat=1", "eval_samples=4", "device=cpu",
                "n_clusters=3", "n_overclusters=6"]
        out = _run(cli + ["train", "pica", "--project", url, "--nproc", "2",
                          *[a for s in sets for a in ("--set", s)]])
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        with Project.open(url) as p:
            runs = p.runs()
            assert runs["status"].tolist() == ["finished"]
            assert (tmp_path / "proj" / "runs" / "0001" / "checkpoint.pt").exists()
            ids, emb = p.arrays.load("embeddings/run-0001")
            assert emb.shape[0] == 24 and len(ids) == 24   # width: the default trunk's


def test_every_registered_method_and_finetuner_trains_data_parallel():
    """A method added to the registry without a data-parallel loop is refused, not run twice;
    every one registered now has one (tests/core/test_distributed_methods.py)."""
    from core.jobs import distributed
    from core.methods.registry import FINETUNERS, METHODS

    assert set(METHODS) <= distributed.DATA_PARALLEL
    assert set(FINETUNERS) <= distributed.DATA_PARALLEL_FINETUNERS
    with pytest.raises(ValueError, match="does not train data-parallel"):
        distributed.check_supported("not-a-method")
