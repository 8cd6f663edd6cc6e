"""Residual self-supervision: losses and residual maps against the reference vectors, the
autoencoder's data discipline, training, resume, cancel, residual storage and fine-tuning.

Small on purpose: 28^3 VesselMNIST3D volumes, a handful of them, narrow networks, few steps.
"""
import numpy as np
import pytest
import torch

from tests.conftest import DATA, load_reference, need

SMALL = dict(batch_size=4, widen_factor=0.125, seed=0, device="cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small 3D convolutions: see ``one_torch_thread``."""


def vessel_subset(n_train=12, n_anom=4, n_val=6, n_test=6):
    """A few real VesselMNIST3D volumes per split, anomalies (aneurysms) included everywhere."""
    from core.dataset import SampleSet

    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    xs, ys, sp, ids = [], [], [], []
    for split, n, k in (("train", n_train, n_anom), ("val", n_val, 2), ("test", n_test, 2)):
        y = d[f"{split}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(y == 0)[: n - k], np.flatnonzero(y == 1)[:k]])
        xs.append(d[f"{split}_images"][pick])
        ys.append(y[pick].astype(int))
        sp += [split] * len(pick)
        ids += [f"{split}-{i}" for i in pick]
    return SampleSet(ids=np.array(ids), x=np.concatenate(xs), y=np.concatenate(ys),
                     label_names=["vessel", "aneurysm"], split=np.array(sp))


# ---------------------------------------------------------------------------- reference vectors
@pytest.mark.parametrize("strategy", ["mean", "sum"])
def test_ae_l1_loss_matches_reference(strategy):
    from core.methods.residual_ssl import ae_l1_loss

    ref = load_reference("paranasal_ae_l1loss.npz")
    recon = torch.tensor(ref["recon"], requires_grad=True)
    out = ae_l1_loss(recon, torch.tensor(ref["target"]), strategy)
    assert out["recon_error"].item() == pytest.approx(float(ref[f"{strategy}_recon_error_L1"]), rel=1e-5)
    assert out["recon_error_L2"].item() == pytest.approx(float(ref[f"{strategy}_recon_error_L2"]), rel=1e-5)
    assert out["combined_loss"].item() == pytest.approx(float(ref[f"{strategy}_combined"]), rel=1e-5)
    out["recon_error"].backward()
    np.testing.assert_allclose(recon.grad.numpy(), ref[f"{strategy}_grad_recon_of_L1"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [0, 3, 5, 7])
def test_residual_map_matches_reference(k):
    from core.methods.residual_ssl import pretext_target, residual_map

    ref = load_reference("paranasal_residual.npz")
    mf = residual_map(ref["original"], ref["reconstruction"], median_kernel=k)
    np.testing.assert_allclose(mf, ref[f"MF_{k}"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pretext_target(mf), ref[f"MF_{k}_after_loader_rescale"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["ce", "l1", "l2"])
def test_pretext_loss_matches_reference(kind):
    from core.methods.residual_ssl import residual_loss

    ref = load_reference("paranasal_ssl_residual_loss.npz")
    logits = torch.tensor(ref["logits"], requires_grad=True)
    loss = residual_loss(logits, torch.tensor(ref["target"]), kind)
    assert float(loss) == pytest.approx(float(ref[f"loss_{kind}"]), rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), ref[f"grad_logits_{kind}"], rtol=1e-5, atol=1e-6)


def test_residual_rescale_keeps_constant_volume():
    from core.methods.residual_ssl import rescale_percentiles

    z = np.zeros((4, 4, 4), np.float32)
    assert np.array_equal(rescale_percentiles(z), z)


# ---------------------------------------------------------------------------- training behaviour
@pytest.fixture(scope="module")
def trained():
    """One small run shared by several checks (the AE is the slow part on a CPU)."""
    from core.methods.residual_ssl import ResidualSSL

    data = vessel_subset(n_train=6, n_anom=2, n_val=4, n_test=4)
    m = ResidualSSL(ae_epochs=2, epochs=2, **{**SMALL, "batch_size": 2})
    gen = m.steps(data)
    hist = [next(gen)]  # the AE exists now: record every volume it trains on from here
    seen = []
    m.ae_.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()) if mod.training else None)
    hist += list(gen)
    return data, m, hist, seen


def test_autoencoder_never_sees_an_anomalous_training_volume(trained):
    from core.methods.ssl_baselines import volumes_to_tensor

    data, m, hist, seen = trained
    assert hist[0].message == "autoencoder"
    assert seen, "the autoencoder trained on nothing after the first step"
    x = volumes_to_tensor(data.x)
    shown = torch.cat(seen).flatten(1)
    allowed = np.flatnonzero((data.split == "train") & (data.class_index == 0))
    assert set(m.ae_training_indices(data)) == set(allowed)
    for i in range(len(data)):
        if i not in allowed:
            hit = (shown == x[i].flatten()).all(1).any().item()
            assert not hit, f"autoencoder trained on {data.ids[i]} (split {data.split[i]}, label {data.class_index[i]})"
    # every volume (all splits, anomalies included) gets a residual map in [0, 1]
    assert m.residuals_.shape == data.x.shape and 0 <= m.residuals_.min() and m.residuals_.max() <= 1


def test_residual_ssl_lowers_both_losses_and_embeds(trained):
    data, m, hist, _ = trained
    ae = [p.losses["ae_l1"] for p in hist if "ae_l1" in p.losses]
    pre = [p.losses["residual"] for p in hist if "residual" in p.losses]
    assert np.mean(ae[-2:]) < ae[0]
    assert np.mean(pre[-2:]) < pre[0]
    emb = m.transform(data)
    assert emb.shape == (len(data), 64) and np.isfinite(emb).all()


def test_progress_spans_both_stages(trained):
    """The two stages differ in steps per epoch: progress still runs from 0 to 1, monotonic."""
    _, _, hist, _ = trained
    fractions = [p.fraction for p in hist]
    assert all(f is not None for f in fractions)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert hist[-1].global_step == hist[-1].total_steps


def test_residual_ssl_resume_is_exact():
    from core.methods.residual_ssl import ResidualSSL

    data = vessel_subset(n_train=4, n_anom=1, n_val=2, n_test=2)
    small = {**SMALL, "batch_size": 2}
    full = ResidualSSL(ae_epochs=2, epochs=2, **small)
    ref = [p.losses for p in full.steps(data)]
    first = ResidualSSL(ae_epochs=2, epochs=2, **small)
    part = []
    for p in first.steps(data):
        part.append(p.losses)
        if "residual" in p.losses:  # stop inside the pretext stage, after the AE
            break
    state = first.state_dict()
    rest = [p.losses for p in ResidualSSL(ae_epochs=2, epochs=2, **small).steps(data, resume=state)]
    # the residual stage yields one Progress without losses; a resumed run announces it again
    joined = [r for r in part + rest if r]
    ref = [r for r in ref if r]
    assert len(joined) == len(ref)
    for a, b in zip(joined, ref):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6)


def test_cancel_within_one_step_and_residuals_stored_in_project(tmp_path):
    from core.jobs import CANCELLED, FINISHED, Job, load_checkpoint
    from core.methods.residual_ssl import ResidualSSL
    from core.project import Project, SampleRecord

    data = vessel_subset(n_train=6, n_anom=2, n_val=2, n_test=2)
    project = Project.create(tmp_path / "p")
    project.save_sample_array("vessel.npy", data.x)
    names = data.label_names
    project.add_samples([SampleRecord(id=i, dataset="vesselmnist3d", kind="volume", split=s, shape=(28, 28, 28),
                                      data_file="vessel.npy", data_index=k, labels=[names[c]])
                         for k, (i, s, c) in enumerate(zip(data.ids, data.split, data.class_index))])
    small = {**SMALL, "batch_size": 2}  # 4 normal training volumes: 2 AE steps per epoch
    m = ResidualSSL(ae_epochs=1, epochs=1, **small)
    loaded = m.load_data(project)
    job = Job(m, loaded, project=project)
    job.on_progress = lambda p: job.cancel()  # cancel during the very first step
    job.run()
    assert job.status == CANCELLED and len(job.history) == 1
    ck = load_checkpoint(job.checkpoint_path)
    assert ck["stage"] == "ae" and ck["ae_step"] == 1 and ck["params"] == m.get_params()
    # resume the same run to the end: the residual maps land in the project with their ids
    m2 = ResidualSSL(ae_epochs=1, epochs=1, **small)
    job2 = Job(m2, m2.load_data(project), project=project, resume=job.checkpoint_path, run_id=job.run_id)
    job2.run()
    assert job2.status == FINISHED
    from core.pipeline import apply_run

    lines = apply_run(project, m2, job.run_id, data=loaded)
    assert any(line.startswith("residual maps:") for line in lines)
    ids, res = project.arrays.load(f"residuals/run-{job.run_id:04d}")
    assert sorted(ids) == sorted(loaded.ids) and res.shape == (len(ids), 28, 28, 28)


def test_finetune_from_pretext_checkpoint_reports_test_metrics(trained):
    from core.methods.residual_ssl import AnomalyFinetune

    data, pre, _, _ = trained
    ft = AnomalyFinetune(init_checkpoint=pre.state_dict(), label_fraction=0.5, epochs=3, patience=2, batch_size=4,
                         seed=0, device="cpu")
    # the encoder starts from the pretext weights
    ft._init()
    enc = pre.model_.encoder_state_dict()
    assert all(torch.equal(ft.model_.state_dict()[k], v) for k, v in enc.items())
    hist = list(ft.steps(data))
    assert hist[-1].message.startswith("evaluated")
    for k in ("test_auprc", "test_auroc", "test_precision", "test_recall", "test_f1", "threshold"):
        assert k in ft.metrics_
    assert ft.fraction_["fraction"] == 0.5 and ft.fraction_["per_class"] == {0: 2, 1: 1}
    assert any("val_loss" in p.metrics for p in hist)
    assert set(np.unique(ft.predict_clusters(data))) <= {0, 1}
    # resume of the fine-tuner from a mid-run state gives the same final metrics
    ft2 = AnomalyFinetune(init_checkpoint=pre.state_dict(), label_fraction=0.5, epochs=3, patience=2,
                          batch_size=4, seed=0, device="cpu")
    g = ft2.steps(data)
    for _ in range(3):
        next(g)
    state = ft2.state_dict()
    g.close()
    ft3 = AnomalyFinetune(init_checkpoint=pre.state_dict(), label_fraction=0.5, epochs=3, patience=2,
                          batch_size=4, seed=0, device="cpu")
    list(ft3.steps(data, resume=state))
    assert ft3.metrics_["test_auprc"] == pytest.approx(ft.metrics_["test_auprc"], abs=1e-6)


def test_finetune_needs_validation_labels():
    from core.methods.residual_ssl import AnomalyFinetune

    data = vessel_subset().by_split("train", "test")
    with pytest.raises(ValueError, match="val"):
        list(AnomalyFinetune(epochs=1, device="cpu").steps(data))
