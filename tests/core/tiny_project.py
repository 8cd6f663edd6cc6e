"""A tiny real project for the checkpoint-trust and CLI-signal tests: a few OrganAMNIST images
(train and val, labelled), built through the project store in a second."""
from __future__ import annotations

import numpy as np

from tests.conftest import DATA, need

#: PICA settings that train in a few seconds on the tiny project (one step per head per epoch)
PICA_TINY = ["--set", "batch_size=8", "--set", "n_repeat=1", "--set", "n_clusters=3",
             "--set", "n_overclusters=6", "--set", "eval_samples=0", "--set", "device=cpu"]


def organ_project(path, *, n_train: int = 8, n_val: int = 4):
    """``n_train`` training and ``n_val`` validation images of OrganAMNIST's first classes."""
    from core.project import Project, SampleRecord

    d = np.load(need(DATA / "organamnist" / "organamnist.npz"))
    xs, recs = [], []
    for split, n in (("train", n_train), ("val", n_val)):
        y = d[f"{split}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(y == c)[: (n + 2) // 3] for c in range(3)])[:n]
        for i in pick:
            recs.append((f"organamnist/{split}/{i:05d}", split, f"organ{int(y[i])}"))
            xs.append(d[f"{split}_images"][i])
    project = Project.create(path)
    project.save_sample_array("organ.npy", np.stack(xs))
    project.add_samples([SampleRecord(id=sid, dataset="organamnist", kind="image2d", split=split,
                                      shape=(28, 28), data_file="organ.npy", data_index=k, labels=[lab])
                         for k, (sid, split, lab) in enumerate(recs)])
    return project
