"""PICA on a small real OrganAMNIST subset: the loss falls, resume is exact, cancel stops within a step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import organamnist_per_class
from core.jobs import CANCELLED, FINISHED, Job, load_checkpoint
from core.methods.pica import PICA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def organ():
    """Two images of each of the 11 organs (train split)."""
    return organamnist_per_class(2)


def _small(**kw):
    # PICA's own schedule (one head per pass); the joint default is tested below
    params = dict(batch_size=16, n_repeat=1, n_clusters=4, n_overclusters=8, eval_samples=0, seed=3,
                  device="cpu", head_schedule="alternate")
    params.update(kw)
    return PICA(**params)


def test_steps_lower_both_heads_losses(organ):
    torch.set_num_threads(2)
    data = organ.subset(np.arange(16))
    m = _small(epochs=3)
    hist = [p for p in m.steps(data) if p.losses]  # optimisation steps (start-up progress has no losses)
    assert len(hist) == 6 and hist[-1].epoch_end and hist[-1].global_step == 6
    # one batch per head: step 1 of each epoch trains the over-clustering head, step 2 the target
    assert [p.message.startswith(f"head {h}") for p, h in zip(hist, ["over", "target"] * 3)] == [True] * 6
    over = [p.losses["loss"] for p in hist if p.step == 1]
    target = [p.losses["loss"] for p in hist if p.step == 2]
    assert over[-1] < over[0] and target[-1] < target[0]
    assert set(hist[0].losses) == {"loss", "pui", "entropy"}
    # per-epoch scores against the organ labels
    assert {"nmi", "acc", "ari", "purity"} <= set(hist[1].metrics) and not hist[0].metrics
    assert 0.0 <= hist[-1].metrics["nmi"] <= 1.0
    emb = m.transform(data)
    assert emb.shape == (16, m.model_.trunk.out_dim) and np.isfinite(emb).all()
    clusters = m.predict_clusters(data)
    assert clusters.shape == (16,) and clusters.max() < 4
    assert m.predict_proba(data).shape == (16, 4)
    # the over-clustering head: its argmax over its 8 clusters
    over = m.predict_overclusters(data)
    assert over.shape == (16,) and over.dtype.kind == "i" and 0 <= over.min() and over.max() < 8


def test_joint_schedule_trains_both_heads_on_every_batch(organ):
    """The default schedule: one step per batch, its loss the sum of both heads' PICA losses."""
    torch.set_num_threads(2)
    data = organ.subset(np.arange(16))
    m = _small(epochs=3, batch_size=8, head_schedule="joint")
    assert PICA().head_schedule == "joint"
    hist = [p for p in m.steps(data) if p.losses]
    assert len(hist) == 6 and [p.epoch_end for p in hist] == [False, True] * 3  # 2 batches per epoch
    assert all(p.message.startswith("head joint") for p in hist)
    ends = [p.metrics for p in hist if p.epoch_end]
    assert all({"over_pui", "over_prior", "target_pui", "target_prior"} <= set(e) for e in ends)
    # the step's loss is over + target (each pui + lam * prior), its pui / prior terms the target's
    for p in hist:
        assert p.losses["loss"] > p.losses["pui"] + 2.0 * p.losses["entropy"]
    assert hist[-1].losses["loss"] < hist[0].losses["loss"]
    with pytest.raises(ValueError, match="head_schedule"):
        list(_small(epochs=1, head_schedule="both").steps(data))


def test_dirichlet_prior_trains(organ):
    m = _small(epochs=1, prior="dirichlet", alpha=1.5, backbone="vgg16_bn")
    hist = [p for p in m.steps(organ.subset(np.arange(16))) if p.losses]
    assert "dirichlet" in hist[0].losses and np.isfinite(hist[-1].losses["loss"])


def test_instance_term_is_reported_learned_and_saved(organ):
    """``instance_weight`` adds an NT-Xent term between the weak and the first strong view, on a
    projector the checkpoint carries: the term falls over a few steps on real organ images, the
    step's loss is PICA's plus that term, and a reloaded model predicts the same clusters."""
    from core.methods.ssl_baselines import nt_xent_loss

    torch.set_num_threads(2)
    data = organ.subset(np.arange(22))
    m = _small(epochs=6, batch_size=11, head_schedule="joint", instance_weight=1.0)
    hist = [p for p in m.steps(data) if p.losses]
    assert all({"loss", "pui", "entropy", "instance"} <= set(p.losses) for p in hist)
    first, last = np.mean([p.losses["instance"] for p in hist[:2]]), np.mean([p.losses["instance"] for p in hist[-2:]])
    assert last < first
    assert all(p.losses["loss"] > p.losses["instance"] + p.losses["pui"] for p in hist)
    # the epoch's mean of the term is on the learning curve, next to the PUI and prior terms
    ends = [p for p in hist if p.epoch_end]
    assert len(ends) == 6 and all("instance_loss" in p.metrics and "target_pui" in p.metrics for p in ends)
    per_epoch = [np.mean([p.losses["instance"] for p in hist if p.epoch == e]) for e in range(6)]
    np.testing.assert_allclose([p.metrics["instance_loss"] for p in ends], per_epoch, rtol=1e-9)
    # a batch of n pairs starts near log(2n - 1): the views are not yet matched
    assert hist[0].losses["instance"] == pytest.approx(np.log(21), rel=0.25)
    state = m.state_dict()
    assert any(k.startswith("projector.") for k in state["model"])
    again = PICA.from_checkpoint(state)
    assert (again.predict_clusters(data) == m.predict_clusters(data)).all()
    # a checkpoint from before the term (no such parameter, no projector) still loads
    old = {**state, "params": {k: v for k, v in state["params"].items() if k != "instance_weight"},
           "model": {k: v for k, v in state["model"].items() if not k.startswith("projector.")}}
    plain = _small(instance_weight=0.0)
    plain._build(state["head_sizes"], trunk_config=dict(state["trunk_config"]))
    old["optimizer"] = plain.optimizer_.state_dict()  # Adam over the parameters without a projector
    legacy = PICA.from_checkpoint(old)
    assert legacy.instance_weight == 0.0 and not hasattr(legacy.model_, "projector")
    assert (legacy.predict_clusters(data) == m.predict_clusters(data)).all()
    # the term itself: identical views give a lower loss than unrelated ones
    z = torch.randn(6, 8, dtype=torch.float64)
    assert nt_xent_loss(z, z, 0.5) < nt_xent_loss(z, torch.randn(6, 8, dtype=torch.float64), 0.5)


def test_resume_is_exact_and_cancel_stops_within_a_step(organ, tmp_path):
    data = organ.subset(np.arange(8))
    kw = dict(epochs=2, batch_size=8, backbone="vgg16_bn")  # 1 batch x 2 heads = 2 steps per epoch
    ref = _small(**kw)
    ref_hist = [p for p in ref.steps(data) if p.losses]
    assert len(ref_hist) == 4

    ckpt = tmp_path / "pica.pt"
    m = _small(**kw)
    job = Job(m, data, checkpoint_path=ckpt)
    # cancel in the middle of epoch 1, after its over-clustering step
    job.on_progress = lambda p: job.cancel() if p.global_step == 3 else None
    job.start()
    assert job.wait(600)
    steps = [p for p in job.history if p.losses]
    assert job.status == CANCELLED and len(steps) == 3  # stopped right after the step asked
    assert job.history[-1] is steps[-1]
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 1, 3)

    resumed = _small(**kw)
    job2 = Job(resumed, data, checkpoint_path=ckpt, resume=ckpt)
    job2.run()
    assert job2.status == FINISHED
    steps2 = [p for p in job2.history if p.losses]
    assert [p.global_step for p in steps2] == [4]
    assert steps2[0].losses["loss"] == pytest.approx(ref_hist[3].losses["loss"], rel=1e-5, abs=1e-6)
    for (k, va), vb in zip(resumed.model_.state_dict().items(), ref.model_.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=k)
    rebuilt = PICA.from_checkpoint(ckpt)
    # the resumed run reported before its first step (loading, network built), without losses
    assert not job2.history[0].losses and job2.history[0].message.startswith("PICA: loading 8 images")
    np.testing.assert_allclose(rebuilt.transform(data), resumed.transform(data), rtol=1e-5, atol=1e-5)
