"""FixMatch's paper settings (SGD-Nesterov, cosine decay, weight EMA, the pseudo-labelling
forward) and the few-label benchmark, on real OrganAMNIST images (a few steps only)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import DATA, need, organamnist_per_class

from core.methods.finetune import ClusterFinetune, WeightEMA, cosine_lr_factor
from core.methods.fixmatch import FixMatch

ROOT = Path(__file__).resolve().parents[2]


def test_cosine_factor_is_fixmatch_decay():
    assert cosine_lr_factor(0, 100) == 1.0
    assert cosine_lr_factor(100, 100) == pytest.approx(math.cos(7 * math.pi / 16))
    assert cosine_lr_factor(500, 100) == pytest.approx(math.cos(7 * math.pi / 16))  # clamped at the end
    f = [cosine_lr_factor(k, 50) for k in range(51)]
    assert all(a > b for a, b in zip(f, f[1:]))


def test_weight_ema_against_float64_recursion():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(net, decay=0.9)
    oracle = {k: v.detach().double().clone() for k, v in net.state_dict().items() if v.is_floating_point()}
    for n in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net(torch.randn(8, 3))  # moves the batch-norm buffers, num_batches_tracked included
        ema.update(net)
        d = min(0.9, (1 + n) / (10 + n))
        for k in oracle:
            oracle[k] = d * oracle[k] + (1 - d) * net.state_dict()[k].double()
    got = ema.module.state_dict()
    for k, v in oracle.items():
        np.testing.assert_allclose(got[k].double().numpy(), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(got["1.num_batches_tracked"]) == int(net.state_dict()["1.num_batches_tracked"]) == 30
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.fixture(scope="module")
def organs():
    return organamnist_per_class(3)  # 33 real images, 11 organs


@pytest.mark.parametrize("weak_forward", ["joint", "no_grad"])
def test_fixmatch_paper_defaults_on_organamnist(organs, weak_forward):
    torch.set_num_threads(1)
    m = FixMatch(variant="one-head", backbone="convnet_small", epochs=1, steps_per_epoch=3, batch_size=4, mu=2,
                 weak_forward=weak_forward, seed=0, device="cpu")
    assert (m.optimizer, m.lr, m.weight_decay, m.schedule, m.ema_decay, m.threshold) == \
        ("sgd", 0.03, 5e-4, "cosine", 0.999, 0.95)
    gen = m.steps(organs)
    p = next(gen)
    assert {"loss", "Lx", "Lu", "mask"} <= set(p.losses) and np.isfinite(p.losses["loss"])
    opt = m.optimizer_
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert all(q.ndim > 1 for q in decayed["params"]) and all(q.ndim == 1 for q in plain["params"])
    # the rate of the step just taken: step 0 of 3 -> 0.03; the next one follows the cosine
    next(gen)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03 * cosine_lr_factor(1, 3))
    # evaluation uses the weight EMA, which differs from the raw weights after two steps
    assert m._eval_module() is m.ema_.module and m.ema_.updates == 2
    raw = dict(m.model_.named_parameters())
    assert any(not torch.equal(v, raw[k]) for k, v in m.ema_.module.named_parameters())
    list(gen)
    assert m.ema_ is None and m.model_.trunk.out_dim == 128  # finished: the kept weights are the model
    prob = m.predict_proba(organs.subset(np.arange(5)))
    assert prob.shape == (5, 11) and np.isfinite(prob).all()


def test_finetune_keeps_adam_defaults_and_takes_sgd(organs):
    torch.set_num_threads(1)
    m = ClusterFinetune(backbone="convnet_small", epochs=1, batch_size=8, seed=0, device="cpu").fit(organs)
    assert isinstance(m.optimizer_, torch.optim.Adam) and m.ema_ is None
    s = ClusterFinetune(backbone="convnet_small", epochs=1, batch_size=8, optimizer="sgd", schedule="cosine",
                        ema_decay=0.99, lr=0.01, seed=0, device="cpu")
    hist = list(s.steps(organs))
    assert isinstance(s.optimizer_, torch.optim.SGD) and len(hist) == 4
    assert s.optimizer_.param_groups[0]["lr"] == pytest.approx(0.01 * cosine_lr_factor(3, 4))


def test_few_labels_bench_smoke(tmp_path):
    need(DATA / "organamnist" / "organamnist.npz")
    r = subprocess.run([sys.executable, "bench/few_labels.py", "--n-train", "400", "--n-test", "300",
                        "--only", "sup", "--sup-epochs", "1", "--batch-size", "8", "--pica-epochs", "0",
                        "--curve-test", "0", "--monitor", "loss", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUTF8": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CPU:" in r.stdout and "supervised (labelled 10 % only)" in r.stdout and ">= 0.9" in r.stdout
    assert "k-means PCA-50 (K=88)" in r.stdout and "F1 Alg. 1, 1 % dev" in r.stdout
    import json

    res = json.loads((tmp_path / "results.json").read_text())
    row = res["classification"][0]
    assert 0 <= row["test_acc"] <= 1 and 30 <= row["labelled"] <= 50 and len(row["curve"]) == 1
    # --curve-test 0: the curve (and its last-epoch figure) is on the whole test split
    assert row["curve_test_images"] == 300 and "on 300 test images" in r.stdout
    # the epoch the other rule (val F1) would keep is reported next to the chosen one: one epoch, so both keep it
    assert row["other_rule"] == "f1" and row["other_rule_epoch"] == 1
    assert row["other_rule_test_acc"] == pytest.approx(row["test_acc"], abs=1 / 300)
    assert "val F1 would keep epoch 1" in r.stdout and "| val F1 chosen |" in r.stdout
    assert "weights chosen on val BCE" in r.stdout and row["params"]["monitor"] == "loss"
    assert "test acc (val BCE chosen)" in r.stdout
    assert {r_["method"] for r_ in res["algorithm1"]} >= {"k-means PCA-50 (K=11)", "k-means PCA-50 (K=88)"}
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
