"""A small trained shape project on real AdrenalMNIST3D (64^3 masks) for the workflow and query
tests: imported and derived through ``core.workflows``, DeepDiffusion trained for 24 steps (3 epochs of 60 shapes),
applied (3 k-means clusters), a development set, Algorithm 1 and one manual override.

Built once per test session (``trained_adrenal`` fixture); tests copy it before editing.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.jobs.steps import run_to_end
from tests.conftest import DATA, need

SRC = DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"
#: held-out test shapes written as NIfTI masks: the "new cases"
NEW_CASES = (150, 151)


def write_mask_nifti(path, mask: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> str:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(mask.astype(np.uint8)))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return str(path)


def build(path, tmp):
    import torch

    from core.methods.registry import get_method
    from core.project import Project
    from core.workflows.apply import apply_run
    from core.workflows.derive import import_and_derive
    from core.workflows.mapping import algorithm1
    from core.workflows.runs import load_method_data
    from core.workflows.training import train_steps

    with np.load(need(SRC), allow_pickle=False) as z:
        parts = {}
        for split, per_class in (("train", 30), ("test", 6)):
            lab = z[f"{split}_labels"].ravel()
            idx = np.r_[np.flatnonzero(lab == 0)[:per_class], np.flatnonzero(lab == 1)[:per_class]]
            parts[f"{split}_images"] = z[f"{split}_images"][idx]
            parts[f"{split}_labels"] = z[f"{split}_labels"][idx]
        new = {i: (z["test_images"][i], int(z["test_labels"][i, 0])) for i in NEW_CASES}
    npz = tmp / "adrenalmnist3d.npz"
    np.savez(npz, **parts)
    masks = {i: write_mask_nifti(tmp / f"new_case_{i}_mask.nii.gz", m) for i, (m, _) in new.items()}

    project = Project.create(path)
    report = import_and_derive(project, [npz])
    assert not report.points_failed, report.points_failed
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # 24 steps: the fewest that leave a usable (not collapsed) embedding on these 60 shapes
        method = get_method("deepdiffusion")(epochs=3, batch_size=8, out_dim=32, k=3, device="cpu",
                                             eval_every=0, seed=0)
        data = load_method_data(project, method)
        job = run_to_end(train_steps(project, method, data, name="deepdiffusion"))
        apply_run(project, method, job.run_id, data=data, n_clusters=3)
    finally:
        torch.set_num_threads(n_threads)
    train = project.samples(split="train")["id"].tolist()
    project.set_dev(train[::2], author="tester")
    clustering = project.active_clustering_name
    algorithm1(project, clustering)
    project.set_cluster_label(clustering, 0, {project.label_names()[0]: 1.0}, author="tester")
    project.close()
    return {"run": job.run_id, "clustering": clustering, "masks": masks,
            "new_labels": {i: lab for i, (_, lab) in new.items()}}


@pytest.fixture(scope="session")
def trained_adrenal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adrenal-trained")
    info = build(tmp / "project", tmp)
    return tmp / "project", info


@pytest.fixture
def adrenal_copy(trained_adrenal, tmp_path):
    src, info = trained_adrenal
    dst = tmp_path / "project"
    shutil.copytree(src, dst)
    return dst, info


def table_dump(project, table: str, where: str = "", params=()) -> list[tuple]:
    """Every row of a table, in a fixed order: to compare tables byte for byte."""
    return sorted(project.query(f"SELECT * FROM {table} {where}", params), key=repr)


CT = DATA / "totalseg_example" / "example_ct_sm.nii.gz"
CT_SEG = DATA / "totalseg_example" / "example_seg.nii.gz"
