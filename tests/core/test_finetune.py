"""Fine-tuning a clustering trunk with a multi-label head (ultrasound paper 2.2.4)."""
import numpy as np
import pytest
import torch

from tests.conftest import DATA, need

from core.methods.finetune import ClusterFinetune, load_trunk_state, stratified_fraction


@pytest.fixture(scope="module")
def slices():
    need(DATA / "totalseg_example")
    from core.data_multilabel import totalseg_slices

    return totalseg_slices(DATA / "totalseg_example", size=(32, 32), include_unlabelled=False)


def _small(**kw):
    base = dict(small_input=False, batch_size=8, lr=1e-3, seed=0, device="cpu")
    base.update(kw)
    return ClusterFinetune(**base)


def test_stratified_fraction():
    y = np.repeat(np.eye(3), [100, 40, 3], axis=0)
    keep = stratified_fraction(y, 0.1, seed=1)
    assert keep[:100].sum() == 10 and keep[100:140].sum() == 4 and keep[140:].sum() == 1
    np.testing.assert_array_equal(keep, stratified_fraction(y, 0.1, seed=1))
    assert not np.array_equal(keep, stratified_fraction(y, 0.1, seed=2))
    assert stratified_fraction(y, 1.0, seed=0).all()
    with pytest.raises(ValueError, match="label_fraction"):
        stratified_fraction(y, 0.0, seed=0)


def test_finetune_lowers_loss_and_keeps_best_epoch(slices):
    torch.set_num_threads(2)
    m = _small(epochs=2, batch_size=12, augment="none")
    hist = list(m.steps(slices))
    assert len(hist) == 2 * 2  # 24 labelled training slices / 12
    assert np.mean([p.losses["bce"] for p in hist[-2:]]) < np.mean([p.losses["bce"] for p in hist[:2]])
    ends = [p for p in hist if p.epoch_end]
    assert len(ends) == 2 and all("val_f1" in p.metrics and "epoch_s" in p.metrics for p in ends)
    best = int(np.argmax([p.metrics["val_f1"] for p in ends]))
    assert m.best_epoch_ == best
    pred = m.predict(slices)
    assert pred.shape == (30, 7) and set(np.unique(pred)) <= {0.0, 1.0}
    assert m.thresholds_.shape == (7,)


def test_early_stopping_after_patience(slices):
    # lr 0: the weights never improve, so validation stops improving and training ends
    m = _small(epochs=30, patience=1, lr=0.0, batch_size=12, augment="none", label_fraction=0.4)
    hist = list(m.steps(slices))
    assert m.stopped_ and hist[-1].message == "early stop"
    assert len(m.history_) == m.best_epoch_ + 1 + 1 < 30


def test_init_from_checkpoint_resume_and_cancel(slices, tmp_path):
    from core.jobs import CANCELLED, Job, load_checkpoint, save_checkpoint

    torch.set_num_threads(2)
    # a "clustering run" checkpoint: trunk weights + the backbone settings in params
    source = _small(epochs=1, label_fraction=0.4, batch_size=12)
    source.fit(slices)
    ckpt_src = tmp_path / "cluster.pt"
    save_checkpoint(ckpt_src, {"params": {"backbone": "resnet18", "small_input": False},
                               "model": {f"trunk.{k}": v for k, v in source.model_.trunk.state_dict().items()}})
    trunk, kw = load_trunk_state(ckpt_src)
    assert kw == {"backbone": "resnet18", "small_input": False}

    kw = dict(init_checkpoint=str(ckpt_src), small_input=True, epochs=1, label_fraction=0.7)
    m = _small(**kw)
    gen = m.steps(slices)
    next(gen)
    gen.close()
    # small_input=True was overridden by the checkpoint's own trunk settings
    assert m.small_input_ is False

    full = _small(**kw).fit(slices)
    part = _small(**kw)
    ckpt = tmp_path / "ft.pt"
    job = Job(part, slices, checkpoint_path=ckpt)
    job.on_progress = lambda p: job.cancel() if p.global_step == 1 else None
    job.run()
    assert job.status == CANCELLED and len(job.history) == 1
    state = load_checkpoint(ckpt)
    assert "params" in state and state["params"]["init_checkpoint"] == str(ckpt_src)
    resumed = _small(**kw).fit(slices, resume=state)
    for (k, a), b in zip(full.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b), k

    with pytest.raises(FileNotFoundError, match="init_checkpoint"):
        _small(init_checkpoint=str(tmp_path / "missing.pt"), epochs=1).fit(slices)


def test_init_from_a_pica_checkpoint(slices, tmp_path):
    pica = pytest.importorskip("core.methods.pica")
    if not hasattr(pica, "PICA"):
        pytest.skip("core.methods.pica has no PICA method yet")
    from core.data_multilabel import totalseg_slices
    from core.jobs import Job

    torch.set_num_threads(2)
    # 16 x 16 slices: PICA's ResNet keeps the full resolution through its first stage
    tiny = totalseg_slices(DATA / "totalseg_example", size=(16, 16), include_unlabelled=False)
    p = pica.PICA(**{k: v for k, v in dict(epochs=1, batch_size=8, small_input=False, n_clusters=4,
                                          n_overclusters=8, n_repeat=1, device="cpu", seed=0).items()
                     if k in pica.PICA().get_params()})
    ckpt = tmp_path / "pica.pt"
    Job(p, tiny.subset(np.arange(16)), checkpoint_path=ckpt).run()
    m = _small(init_checkpoint=str(ckpt), epochs=1)
    gen = m.steps(tiny)
    first = next(gen)
    gen.close()
    assert np.isfinite(first.losses["bce"])
    assert m.backbone_ == p.get_params().get("backbone", "resnet18")
