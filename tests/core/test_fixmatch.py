"""FixMatch losses (reference vectors and the paper's multi-label definitions) and the method."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import DATA, load_reference, need

from core.methods.fixmatch import (FixMatch, combination_targets, fixmatch_loss, onehead_loss,
                                   twohead_loss)


def _leaves(ref, *names):
    return [torch.tensor(ref[n], requires_grad=True) for n in names]


def test_fixmatch_loss_matches_reference():
    ref = load_reference("fixmatch_loss.npz")
    lx, lw, ls = _leaves(ref, "logits_x", "logits_u_w", "logits_u_s")
    t = fixmatch_loss(lx, torch.tensor(ref["targets_x"]), lw, ls, T=float(ref["T"]),
                      threshold=float(ref["threshold"]), lambda_u=float(ref["lambda_u"]))
    t.loss.backward()
    for key in ("loss", "Lx", "Lu"):
        np.testing.assert_allclose(float(getattr(t, key).detach()), ref[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.mask.numpy(), ref["mask"])
    np.testing.assert_array_equal(t.pseudo_targets.numpy(), ref["pseudo_targets"])
    np.testing.assert_allclose(t.max_probs.numpy(), ref["max_probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lx.grad.numpy(), ref["grad_logits_x"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ls.grad.numpy(), ref["grad_logits_u_s"], rtol=1e-4, atol=1e-6)
    assert lw.grad is None  # the weak branch is detached
    # Lu is averaged over ALL unlabelled samples, not over the masked ones
    ce = F.cross_entropy(ls.detach(), t.pseudo_targets, reduction="none")
    assert float(t.Lu.detach()) == pytest.approx(float((ce * t.mask).sum() / len(ce)), rel=1e-6)


def test_onehead_per_label_mode_matches_assumed_formula_file():
    ref = load_reference("fixmatch_multilabel_onehead_formula.npz")
    lx, lw, ls = _leaves(ref, "logits_x", "logits_u_w", "logits_u_s")
    t = onehead_loss(lx, torch.tensor(ref["targets_x_multihot"]), lw, ls, T=float(ref["T"]),
                     threshold=float(ref["threshold"]), lambda_u=float(ref["lambda_u"]), mask_mode="per_label")
    t.loss.backward()
    for key in ("loss", "Lx", "Lu"):
        np.testing.assert_allclose(float(getattr(t, key).detach()), ref[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.mask.numpy(), ref["mask"])
    np.testing.assert_array_equal(t.pseudo_targets.numpy(), ref["pseudo_targets"])
    np.testing.assert_allclose(lx.grad.numpy(), ref["grad_logits_x"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ls.grad.numpy(), ref["grad_logits_u_s"], rtol=1e-4, atol=1e-6)


def test_onehead_paper_definition_hand_case():
    """Paper 2.3.2: y_c = 1[p_c >= 0.5]; the whole pseudo-label is used iff max_c p_c >= tau."""
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    # image 0: one confident class (0.97) -> used, all 3 classes, incl. the unconfident 0.6 one
    # image 1: only confident NEGATIVES (0.01) -> not used (the assumed file would use them)
    # image 2: nothing confident -> not used
    pw = np.array([[0.97, 0.6, 0.2], [0.01, 0.01, 0.4], [0.5, 0.7, 0.3]])
    lw = torch.tensor([[logit(p) for p in row] for row in pw])
    ls = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -0.1], [2.0, 0.0, -1.0]], requires_grad=True)
    lx = torch.zeros(2, 3)
    yx = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    t = onehead_loss(lx, yx, lw, ls, threshold=0.95, lambda_u=2.0)
    np.testing.assert_array_equal(t.mask.numpy(), [1, 0, 0])
    np.testing.assert_array_equal(t.pseudo_targets.numpy(), [[1, 1, 0], [0, 0, 0], [1, 1, 0]])
    s = 1 / (1 + np.exp(-ls.detach().numpy()[0]))
    y0 = np.array([1, 1, 0])
    bce0 = -(y0 * np.log(s) + (1 - y0) * np.log(1 - s)).mean()
    assert float(t.Lu.detach()) == pytest.approx(bce0 / 3, rel=1e-5)  # mean over all 3 unlabelled images
    assert float(t.Lx) == pytest.approx(np.log(2), rel=1e-6)  # BCE of zero logits
    assert float(t.loss.detach()) == pytest.approx(np.log(2) + 2.0 * bce0 / 3, rel=1e-5)
    t.loss.backward()
    assert (ls.grad[1:] == 0).all() and (ls.grad[0] != 0).all()
    # the assumed per-label file would mask differently on the same input
    t2 = onehead_loss(lx, yx, lw, ls.detach(), threshold=0.95, mask_mode="per_label")
    np.testing.assert_array_equal(t2.mask.numpy(), [[1, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_twohead_loss_and_combinations():
    voc = np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32)
    y = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(combination_targets(y, voc), [1, 0, -1])
    g = torch.Generator().manual_seed(0)
    cx, mx = torch.randn(3, 2, generator=g), torch.randn(3, 3, generator=g)
    cw, cs = torch.randn(5, 2, generator=g) * 4, torch.randn(5, 2, generator=g)
    w = torch.tensor(combination_targets(y, voc))
    loss, terms, lbce = twohead_loss(cx, w, mx, torch.tensor(y), cw, cs, threshold=0.9)
    # the unknown combination (-1) is left out of the single-label term, kept in the BCE term
    assert float(terms.Lx) == pytest.approx(float(F.cross_entropy(cx[:2], w[:2])), rel=1e-6)
    assert float(lbce) == pytest.approx(float(F.binary_cross_entropy_with_logits(mx, torch.tensor(y))))
    single = fixmatch_loss(cx, w, cw, cs, threshold=0.9)
    assert float(loss) == pytest.approx(float(single.loss + lbce), rel=1e-6)


# --------------------------------------------------------------------------- the method
@pytest.fixture(scope="module")
def slices():
    need(DATA / "totalseg_example")
    from core.data_multilabel import totalseg_slices

    return totalseg_slices(DATA / "totalseg_example", size=(32, 32))


def _small(**kw):
    base = dict(small_input=False, batch_size=4, mu=1, lr=1e-3, threshold=0.7, seed=0, device="cpu")
    base.update(kw)
    return FixMatch(**base)


@pytest.mark.parametrize("variant", ["two-head", "one-head"])
def test_fixmatch_lowers_supervised_loss_on_slices(slices, variant):
    torch.set_num_threads(2)
    m = _small(variant=variant, epochs=1, steps_per_epoch=6, batch_size=6, augment="none")
    hist = list(m.steps(slices))
    key = "bce" if variant == "two-head" else "Lx"
    first = np.mean([p.losses[key] for p in hist[:2]])
    last = np.mean([p.losses[key] for p in hist[-2:]])
    assert last < first
    assert {"loss", "Lx", "Lu", "mask"} <= set(hist[0].losses)
    assert "val_f1" in hist[-1].metrics and hist[-1].epoch_end
    prob = m.predict_proba(slices.subset(np.arange(5)))
    assert prob.shape == (5, 7) and ((prob >= 0) & (prob <= 1)).all()
    assert m.transform(slices.subset(np.arange(3))).shape == (3, 512)
    if variant == "two-head":  # combinations of the labelled training slices
        assert m.model_.heads["combo"].out_features == len(m.combinations_) == 4


def test_fixmatch_resume_is_exact_and_cancel_within_a_step(slices, tmp_path):
    from core.jobs import CANCELLED, FINISHED, Job, load_checkpoint

    torch.set_num_threads(2)
    kw = dict(variant="two-head", epochs=3, steps_per_epoch=1, label_fraction=0.5)
    full = _small(**kw).fit(slices)

    m = _small(**kw)
    ckpt = tmp_path / "ckpt.pt"
    job = Job(m, slices, checkpoint_path=ckpt)
    job.on_progress = lambda p: job.cancel() if p.global_step == 2 else None
    job.run()
    assert job.status == CANCELLED and len(job.history) == 2  # stopped right after step 2
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step"]) == (2, 0) and state["params"]["label_fraction"] == 0.5

    resumed = _small(**kw)
    job2 = Job(resumed, slices, checkpoint_path=ckpt, resume=ckpt)
    job2.run()
    assert job2.status == FINISHED and [p.global_step for p in job2.history] == [3]
    for (k, a), b in zip(full.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(full.thresholds_, resumed.thresholds_)

    again = FixMatch.from_checkpoint(ckpt)
    np.testing.assert_allclose(again.predict_proba(slices.subset(np.arange(4))),
                               full.predict_proba(slices.subset(np.arange(4))), rtol=1e-5, atol=1e-6)


def test_fixmatch_single_label_and_bad_variant(slices):
    m = _small(variant="single", epochs=1, steps_per_epoch=1)
    m.fit(slices)
    assert m.predict_proba(slices.subset(np.arange(2))).sum(1) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="variant"):
        _small(variant="three-head", epochs=1, steps_per_epoch=1).fit(slices)
