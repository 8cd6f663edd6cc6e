"""DeepDiffusion training on real VesselMNIST3D shapes: a few steps only (small clouds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DATA, need
from core.dataset import SampleSet
from core.jobs import CANCELLED, Job, load_checkpoint
from core.methods.deepdiffusion import DeepDiffusion

N_POINTS = 64  # PointNet takes any cloud size; small clouds keep the tests fast


@pytest.fixture(scope="module")
def vessel_points():
    from core.preprocess.shapes import mask_to_points

    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    # 12 train shapes (both classes) + 6 val shapes
    tr = np.r_[np.flatnonzero(d["train_labels"].ravel() == 0)[:9], np.flatnonzero(d["train_labels"].ravel() == 1)[:3]]
    va = np.r_[np.flatnonzero(d["val_labels"].ravel() == 0)[:3], np.flatnonzero(d["val_labels"].ravel() == 1)[:3]]
    masks = np.concatenate([d["train_images"][tr], d["val_images"][va]]) > 0
    x = np.stack([mask_to_points(m, N_POINTS, seed=i) for i, m in enumerate(masks)])
    y = np.r_[d["train_labels"].ravel()[tr], d["val_labels"].ravel()[va]]
    split = np.array(["train"] * len(tr) + ["val"] * len(va))
    return SampleSet(ids=np.array([f"s{i}" for i in range(len(x))]), x=x, y=y,
                     label_names=["vessel", "aneurysm"], split=split)


def _steps(gen):
    """The optimisation steps of a step generator (the memory initialisation's records carry
    no losses)."""
    return (p for p in gen if p.losses)


def _method(**kw):
    base = dict(epochs=3, batch_size=4, lr=1e-3, k=3, out_dim=16, seed=0, device="cpu", eval_every=1)
    base.update(kw)
    return DeepDiffusion(**base)


def test_training_lowers_the_loss(vessel_points):
    # one full batch, no augmentation: the same loss evaluated step after step. The reference's
    # eval-mode memory start (with the default batch-statistics start the batch's features equal
    # their memory rows at step 0, already the fitting term's best)
    m = _method(epochs=4, batch_size=12, augment=False, memory_init="eval")
    losses = [p.losses["loss"] for p in _steps(m.steps(vessel_points))]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    assert m.memory_.shape == (12, 16)


def test_progress_memory_transform(vessel_points):
    m = _method(epochs=1)
    everything = list(m.steps(vessel_points))
    init = [p for p in everything if not p.losses]
    # the memory initialisation reports its progress (shapes done) before the first step
    assert init and all(p.global_step == 0 for p in init) and "initialising memory" in init[0].message
    assert "memory_mean_cosine" in init[-1].metrics
    hist = [p for p in everything if p.losses]
    assert [p.step for p in hist] == [1, 2, 3] and hist[-1].epoch_end and not hist[0].epoch_end
    assert set(hist[0].losses) == {"loss", "fit", "smooth"}
    assert hist[0].samples_per_s > 0 and hist[0].eta_s is not None
    assert "val_map" in hist[-1].metrics and 0 <= hist[-1].metrics["val_map"] <= 1
    # per-epoch diagnostics: fitting term relative to log N, memory spread
    assert {"fit_rel_logn", "memory_mean_cosine", "memory_effective_rank"} <= set(hist[-1].metrics)
    assert 0 < hist[-1].metrics["fit_rel_logn"] < 1.5 and hist[-1].message.startswith(("epoch 1", "WARNING"))
    f = m.transform(vessel_points)
    assert f.shape == (18, 16) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)


def test_resume_continues_exactly(vessel_points, tmp_path):
    full = _method(epochs=2)
    full_hist = list(_steps(full.steps(vessel_points)))
    # interrupted after 4 steps (mid epoch 1), checkpointed, resumed by a fresh object
    part = _method(epochs=2)
    gen = part.steps(vessel_points)
    steps = _steps(gen)
    first = [next(steps) for _ in range(4)]
    gen.close()
    state = part.state_dict()
    assert (state["epoch"], state["step"]) == (1, 1)
    resumed = DeepDiffusion.from_checkpoint(state)
    rest = list(_steps(resumed.steps(vessel_points, resume=state)))
    assert [(p.epoch, p.step) for p in rest][0] == (1, 2)
    assert [p.global_step for p in first + rest] == [p.global_step for p in full_hist]
    np.testing.assert_array_equal([p.losses["loss"] for p in first + rest],
                                  [p.losses["loss"] for p in full_hist])
    assert torch.equal(resumed.memory_, full.memory_)
    np.testing.assert_array_equal(resumed.transform(vessel_points), full.transform(vessel_points))


def test_job_cancel_stops_within_one_step_and_checkpoints(vessel_points, tmp_path):
    m = _method(epochs=50)
    seen = []

    def on_progress(p):
        if not p.losses:
            return
        seen.append(p.global_step)
        if len(seen) == 2:
            job.cancel()

    ckpt = tmp_path / "ckpt.pt"
    job = Job(m, vessel_points, checkpoint_path=ckpt, on_progress=on_progress)
    job.run()
    assert job.status == CANCELLED
    assert seen == [1, 2]
    state = load_checkpoint(ckpt)
    assert state["global_step"] == 2 and state["params"]["epochs"] == 50
    again = DeepDiffusion.from_checkpoint(state, epochs=1)
    assert again.transform(vessel_points).shape == (18, 16)


def test_bad_points_are_reported():
    with pytest.raises(ValueError, match="N x P x 3"):
        list(_method().steps(SampleSet(ids=np.array(["a", "b"]), x=np.zeros((2, 5)))))


def test_memory_initialisation_batch_statistics_vs_reference(vessel_points):
    # the reference's eval-mode pass with the initial BatchNorm statistics gives nearly identical
    # memory rows (a collapsed start, warned about); batch statistics spread them
    ref = [p for p in _method(epochs=1, memory_init="eval").steps(vessel_points) if not p.losses][-1]
    new = [p for p in _method(epochs=1, memory_init="batch").steps(vessel_points) if not p.losses][-1]
    assert ref.metrics["memory_mean_cosine"] > 0.99 and ref.message.startswith("WARNING")
    assert new.metrics["memory_mean_cosine"] < 0.9 and not new.message.startswith("WARNING")


def test_collapse_warning_fires_at_a_broken_learning_rate(vessel_points):
    # lr 10 wrecks the run within a few steps: the fitting term ends far above its uniform
    # value log N, and with cosine logits (temperature 0.1) the encoder's features collapse; the
    # epoch-end messages warn
    m = _method(epochs=3, batch_size=4, lr=10.0, memory_lr=10.0, eval_every=0, memory_init="batch")
    ends = [p for p in _steps(m.steps(vessel_points)) if p.epoch_end]
    assert len(ends) == 3
    msgs = [p.message for p in ends]
    assert ends[-1].message.startswith("WARNING") and "diverging" in ends[-1].message, msgs
    m = _method(epochs=3, batch_size=4, lr=10.0, memory_lr=10.0, eval_every=0, temperature=0.1,
                normalize_memory=True, memory_init="batch")
    msgs = [p.message for p in _steps(m.steps(vessel_points)) if p.epoch_end]
    assert any(s.startswith("WARNING") and "embedding collapsed" in s for s in msgs), msgs
    # a collapsed memory (the reference's start) is reported as such at every epoch end until it
    # spreads: two steps at the reference's lr leave it collapsed
    ref = _method(epochs=1, batch_size=6, memory_init="eval", lr=1e-4, eval_every=0)
    end = [p for p in _steps(ref.steps(vessel_points)) if p.epoch_end][-1]
    assert end.message.startswith("WARNING") and "collapsed" in end.message, end.message
    assert end.metrics["memory_mean_cosine"] > 0.98
