"""``latentmap train deepdiffusion`` -> ``embed`` -> ``evaluate`` on a small VesselMNIST3D project."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA, need
from core.project import Project, SampleRecord


def main(argv) -> int:
    """The sub-commands under test only (other commands may be absent while they are written)."""
    import argparse

    from core.cli import embed, evaluate, train

    parser = argparse.ArgumentParser(prog="latentmap")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (train, embed, evaluate):
        module.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


@pytest.fixture()
def project_dir(tmp_path):
    from core.preprocess.shapes import compute_points

    with np.load(need(DATA / "vesselmnist3d/vesselmnist3d.npz"), allow_pickle=False) as z:
        parts = []
        for split, n0, n1 in (("train", 8, 4), ("test", 5, 3)):
            lab = z[f"{split}_labels"].ravel()
            idx = np.r_[np.flatnonzero(lab == 0)[:n0], np.flatnonzero(lab == 1)[:n1]]
            parts.append((split, idx, z[f"{split}_images"][idx], lab[idx]))
    proj = Project.create(tmp_path / "proj")
    names = ["vessel", "aneurysm"]
    for split, idx, masks, lab in parts:
        rel = proj.save_sample_array(f"data/vessel/{split}.npy", masks)
        recs = [SampleRecord(id=f"vessel/{split}/{int(i):05d}", dataset="vessel", kind="mask", split=split,
                             shape=(28, 28, 28), data_file=rel, data_index=k) for k, i in enumerate(idx)]
        proj.add_samples(recs)
        for c, name in enumerate(names):
            proj.set_label([r.id for r, l in zip(recs, lab) if l == c], name, True)
    for _ in compute_points(proj, n_points=64, seed=0, save_meshes=False):
        pass
    proj.close()
    return tmp_path / "proj"


def test_train_embed_evaluate(project_dir, tmp_path, capsys):
    sets = ["epochs=1", "batch_size=4", "out_dim=8", "k=3", "device=cpu", "eval_every=0", "memory_init=batch"]
    argv = ["train", "deepdiffusion", "--project", str(project_dir), "--no-embed"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    assert main(["embed", "--project", str(project_dir), "--run", "1"]) == 0
    out = tmp_path / "report"
    assert main(["evaluate", "--project", str(project_dir), "--run", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "retrieval mAP" in text and "Table 1" in text
    for f in ("retrieval_map.csv", "table1.md", "roc_curves.png", "pr_curves.png", "cosine_distance.png"):
        assert (out / f).exists()
    proj = Project.open(project_dir)
    ids, emb = proj.arrays.load("embeddings/run-0001")
    assert emb.shape == (20, 8)
    _, pca_xy = proj.arrays.load("projections/run-0001-pca")
    assert pca_xy.shape == (20, 2)
    assert "evaluation_test" in proj.run(1)["metrics"]
    proj.close()
