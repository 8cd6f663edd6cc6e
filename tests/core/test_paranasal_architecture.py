"""The 3D CAE and the 3D ResUNet-18 have the reference's structure (paranasal_architecture.npz).

Shapes are checked on the meta device: no memory, no compute, the real 64^3 input of the reference.
"""
import numpy as np
import torch

from tests.conftest import load_reference


def _shape(t):
    return str(tuple(t))


def test_cae_parameters_and_stage_shapes():
    from core.models.cae3d import CAE3D

    ref = load_reference("paranasal_architecture.npz")
    ae = CAE3D(input_size=64)
    names = [n for n, _ in ae.named_parameters()]
    assert names == list(ref["ae_param_names"])
    assert [_shape(p.shape) for _, p in ae.named_parameters()] == list(ref["ae_param_shapes"])
    assert sum(p.numel() for p in ae.parameters()) == int(ref["n_params_ae"])
    assert ae.fc_input_dim == 2048
    expect = dict(zip(ref["shape_names"], ref["shape_values"]))
    with torch.device("meta"):
        got = CAE3D(input_size=64).stage_shapes(torch.empty(2, 1, 64, 64, 64))
    for k, v in got.items():
        assert _shape(v) == expect[k], k


def test_resunet18_parameters_counts_and_stage_shapes():
    from core.models.resunet3d import resunet18

    ref = load_reference("paranasal_architecture.npz")
    u = resunet18()
    # Same modules in the same order; only the reference's typo "decocer_layer_N" is renamed.
    ref_names = [n.replace("decocer_layer_", "decoder_layer") for n in ref["unet_param_names"]]
    assert [n for n, _ in u.named_parameters()] == ref_names
    assert [_shape(p.shape) for _, p in u.named_parameters()] == list(ref["unet_param_shapes"])
    assert sum(p.numel() for p in u.parameters()) == int(ref["n_params_resunet18"])
    assert sum(p.numel() for p in u.encoder_parameters()) == int(ref["n_params_resunet18_encoder"])
    assert sum(p.numel() for p in u.fc.parameters()) == int(ref["n_params_resunet18_fc"])
    expect = dict(zip(ref["shape_names"], ref["shape_values"]))
    with torch.device("meta"):
        got = resunet18().stage_shapes(torch.empty(2, 1, 64, 64, 64))
    assert set(got) == {k for k in expect if k.startswith("unet_")}
    for k, v in got.items():
        assert _shape(v) == expect[k], k


def test_networks_take_28_cubed_volumes():
    from core.models.cae3d import CAE3D
    from core.models.resunet3d import resunet18

    x = torch.rand(2, 1, 28, 28, 28)
    with torch.no_grad():
        assert CAE3D(input_size=28)(x).shape == x.shape
        rec, logits = resunet18(widen_factor=0.125)(x)
    assert rec.shape == x.shape and logits.shape == (2, 2)
    assert np.isfinite(rec.numpy()).all()
