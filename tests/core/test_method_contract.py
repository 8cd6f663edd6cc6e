"""The contract every registered method keeps, checked for each entry of the method registry
(``core.methods.registry``), so a new method is covered by default: add its tiny settings to
``TINY`` and these tests run it.

On a few real samples and a few steps each:

* cancel within one step, resume from the checkpoint == the uninterrupted run (same losses, same
  final weights);
* the checkpoint is plain data: ``torch.load(weights_only=True)`` reads it as is, and
  ``from_checkpoint`` rebuilds a model that embeds like the trained one;
* a step whose loss turns NaN stops the run as ``diverged`` with the epoch, step and learning
  rate named, and the last good checkpoint stays as it was.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.jobs import CANCELLED, DIVERGED, FINISHED, Job, load_checkpoint, load_run_checkpoint
from core.methods.registry import FINETUNERS, METHODS, get_finetuner, get_method
from tests.conftest import DATA, need, organamnist_per_class


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks: see ``one_torch_thread``."""


# --------------------------------------------------------------------------- tiny real data
def _points():
    from core.dataset import SampleSet
    from core.preprocess.shapes import mask_to_points

    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    y = d["train_labels"].ravel()
    pick = np.r_[np.flatnonzero(y == 0)[:6], np.flatnonzero(y == 1)[:2]]
    x = np.stack([mask_to_points(d["train_images"][i] > 0, 64, seed=int(i)) for i in pick])
    return SampleSet(ids=np.array([f"s{i}" for i in pick]), x=x, y=y[pick].astype(int),
                     label_names=["vessel", "aneurysm"], split=np.array(["train"] * len(pick)))


def _images():
    return organamnist_per_class(1).subset(np.arange(8))


def _slices():
    need(DATA / "totalseg_example")
    from core.data_multilabel import totalseg_slices

    return totalseg_slices(DATA / "totalseg_example", size=(32, 32))


def _volumes():
    """Normal and anomalous VesselMNIST3D volumes in train, val and test (the anomaly
    fine-tuner needs all three; the SSL pretexts read the train split)."""
    from core.dataset import SampleSet

    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    xs, ys, sp, ids = [], [], [], []
    for split, n, k in (("train", 4, 1), ("val", 2, 1), ("test", 2, 1)):
        y = d[f"{split}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(y == 0)[: n - k], np.flatnonzero(y == 1)[:k]])
        xs.append(d[f"{split}_images"][pick])
        ys.append(y[pick].astype(int))
        sp += [split] * len(pick)
        ids += [f"{split}-{i}" for i in pick]
    return SampleSet(ids=np.array(ids), x=np.concatenate(xs), y=np.concatenate(ys),
                     label_names=["vessel", "aneurysm"], split=np.array(sp))


DATASETS = {"points": _points, "images": _images, "slices": _slices, "volumes": _volumes}
_cache: dict = {}


def data_for(kind: str):
    if kind not in _cache:
        _cache[kind] = DATASETS[kind]()
    return _cache[kind]


VOL = dict(batch_size=2, widen_factor=0.125, seed=0, device="cpu")
#: (data, hyperparameters) giving 2 epochs of at least 2 optimisation steps each, in seconds
TINY: dict[tuple[str, str], tuple[str, dict]] = {
    ("method", "deepdiffusion"): ("points", dict(epochs=2, batch_size=4, k=3, out_dim=16, eval_every=0,
                                                  seed=0, device="cpu")),
    ("method", "pica"): ("images", dict(epochs=2, batch_size=8, n_repeat=1, n_clusters=4, n_overclusters=8,
                                        eval_samples=0, seed=3, device="cpu")),
    ("method", "deepcluster"): ("images", dict(epochs=2, batch_size=4, n_clusters=3, hidden_dim=64,
                                               seed=2, device="cpu")),
    ("method", "fixmatch"): ("slices", dict(small_input=False, epochs=2, steps_per_epoch=2, batch_size=4, mu=1,
                                            seed=0, device="cpu")),
    ("method", "residual-ssl"): ("volumes", dict(ae_epochs=1, epochs=1, **VOL)),
    ("method", "simclr"): ("volumes", dict(epochs=2, **VOL)),
    ("method", "byol"): ("volumes", dict(epochs=2, **VOL)),
    ("method", "simsiam"): ("volumes", dict(epochs=2, **VOL)),
    ("method", "masked"): ("volumes", dict(epochs=2, **VOL)),
    ("finetuner", "cluster-head"): ("slices", dict(small_input=False, epochs=2, batch_size=16, patience=0,
                                                   seed=0, device="cpu")),
    ("finetuner", "residual-ssl"): ("volumes", dict(epochs=2, patience=0, batch_size=2, widen_factor=0.125,
                                                    seed=0, device="cpu")),
}
ENTRIES = [("method", n) for n in METHODS] + [("finetuner", n) for n in FINETUNERS]
#: entries whose float32 kernels round differently with the number of numba threads: their
#: resume check runs in a child process with one numba thread, where it must repeat exactly.
#: (DeepDiffusion's LMR smoothness term is a small difference of large sums, so a thread-count
#: change moves it by ~1e-3 of its value at step 1; with one numba thread resume is exact.)
ONE_NUMBA_THREAD = {("method", "deepdiffusion")}


def _entry(entry):
    if entry not in TINY:
        pytest.fail(f"{entry[0]} {entry[1]!r} is registered but has no tiny settings in "
                    f"tests/core/test_method_contract.py::TINY: add them so the contract is checked")
    table, name = entry
    cls = get_method(name) if table == "method" else get_finetuner(name)
    kind, params = TINY[entry]
    return cls, data_for(kind), params


def _opt_steps(history):
    return [p for p in history if p.losses]


def _tensors(state, prefix=""):
    """Every floating tensor / array of a nested state, by path."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(_tensors(v, f"{prefix}[{i}]"))
    elif isinstance(state, torch.Tensor) and state.is_floating_point():
        out[prefix] = state.detach().double()
    elif isinstance(state, np.ndarray) and state.dtype.kind == "f":
        out[prefix] = torch.from_numpy(state.astype(np.float64))
    return out


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _modules(method):
    return [v for v in vars(method).values() if isinstance(v, torch.nn.Module)]


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{t}:{n}" for t, n in ENTRIES])
def test_cancel_resume_equals_uninterrupted_and_checkpoint_rebuilds(entry, tmp_path, request):
    if entry in ONE_NUMBA_THREAD and os.environ.get("NUMBA_NUM_THREADS") != "1":
        env = dict(os.environ, NUMBA_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               request.node.nodeid], cwd=request.config.rootpath, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return
    cls, data, params = _entry(entry)
    full = Job(cls(**params), data, checkpoint_path=tmp_path / "full.pt")
    full.run()
    assert full.status == FINISHED, full.message
    ref = _opt_steps(full.history)
    assert len(ref) >= 2, "the tiny settings must give at least two optimisation steps"
    # the finished run's checkpoint rebuilds a model that embeds exactly like the trained one
    again = cls.from_checkpoint(load_checkpoint(tmp_path / "full.pt"))
    if hasattr(again, "transform"):
        np.testing.assert_array_equal(np.asarray(again.transform(data)), np.asarray(full.method.transform(data)))

    # cancel during the first optimisation step
    part = Job(cls(**params), data, checkpoint_path=tmp_path / "part.pt")
    part.on_progress = lambda p: part.cancel() if p.losses else None
    part.run()
    assert part.status == CANCELLED
    assert len(_opt_steps(part.history)) == 1, "a cancel must take effect within one step"
    ckpt = tmp_path / "part.pt"
    assert ckpt.is_file()
    # plain data: readable by the safe loader as is (no numpy or other globals allowed)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert isinstance(raw, dict) and raw

    resumed = Job(cls(**params), data, checkpoint_path=ckpt, resume=ckpt)
    resumed.run()
    assert resumed.status == FINISHED, resumed.message
    joined = _opt_steps(part.history) + _opt_steps(resumed.history)
    assert [p.global_step for p in joined] == [p.global_step for p in ref]
    got, want = _tensors(resumed.method.state_dict()), _tensors(full.method.state_dict())
    assert got.keys() == want.keys()
    for a, b in zip(joined, ref):
        assert a.losses.keys() == b.losses.keys()
        for k in a.losses:  # the same float32 operations in the same order: equal to rounding
            assert a.losses[k] == pytest.approx(b.losses[k], rel=1e-5, abs=1e-6), (a.global_step, k)
    for k, w in want.items():
        scale = max(float(w.abs().max()), 1e-12) if w.numel() else 1.0
        torch.testing.assert_close(got[k], w, rtol=0, atol=1e-5 * scale, msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{t}:{n}" for t, n in ENTRIES])
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(entry, tmp_path):
    from core.project import Project

    cls, data, params = _entry(entry)
    project = Project.create(tmp_path / "p")
    method = cls(**params)
    job = Job(method, data, project=project, name=entry[1])
    seen = {"poisoned": False}

    def poison(p):
        # the first step after the first epoch's checkpoint: NaN into every network's first weight
        # (the next step's loss is NaN; or, when this step ends the epoch, its checkpoint would be)
        if seen["poisoned"] or not p.losses or not job.checkpoint_written:
            return
        seen["hash"] = _sha(job.checkpoint_path)
        with torch.no_grad():
            for m in _modules(method):
                first = next((q for q in m.parameters() if q.is_floating_point()), None)
                if first is not None:
                    first.fill_(float("nan"))
        seen["poisoned"] = True

    job.on_progress = poison
    job.run()
    assert seen["poisoned"], "the run ended before a step after its first checkpoint"
    assert job.status == DIVERGED, (job.status, job.message)
    run = project.run(job.run_id)
    assert run["status"] == DIVERGED
    # a NaN loss, or (a kernel failing on NaN features) the NaN weights behind the failed step
    assert "became NaN" in run["message"] and "learning rate" in run["message"], run["message"]
    assert "epoch" in run["message"] and "step" in run["message"]
    # the checkpoint from before the NaN is untouched and finite
    assert _sha(job.checkpoint_path) == seen["hash"]
    state = load_run_checkpoint(project, run)
    assert all(torch.isfinite(t).all() for t in _tensors(state).values())


def test_lr_1e6_is_caught_with_the_learning_rate_named(tmp_path):
    """PICA at lr=1e6 (a user's typo) had NaN losses from epoch 0 and was recorded finished."""
    from core.methods.pica import PICA
    from core.project import Project

    project = Project.create(tmp_path / "p")
    params = {**TINY[("method", "pica")][1], "lr": 1e6, "epochs": 3}
    job = Job(PICA(**params), data_for("images"), project=project, name="pica")
    job.run()
    assert job.status == DIVERGED, job.status
    msg = project.run(job.run_id)["message"]
    assert "the learning rate 1e6 is likely too high" in msg and "became NaN" in msg
