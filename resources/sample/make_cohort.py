"""Maintainers: cut the bundled sample cohort out of the shared AdrenalMNIST3D 64^3 file.

A seeded, stratified subset of the official splits (both classes in every split), saved in
MedMNIST layout so the ordinary importer reads it. Run from the repository root:
    .venv/bin/python resources/sample/make_cohort.py
"""
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "adrenalmnist3d" / "adrenalmnist3d_64.npz"
TARGET = Path(__file__).with_name("adrenalmnist3d_64.npz")
PER_SPLIT = {"train": (90, 30), "val": (15, 5), "test": (30, 10)}  # (normal, hyperplasia)


def main() -> None:
    rng = np.random.default_rng(2023)
    src = np.load(SOURCE)
    out = {}
    for split, counts in PER_SPLIT.items():
        y = src[f"{split}_labels"].ravel()
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c, n in enumerate(counts)])
        idx.sort()
        out[f"{split}_images"] = src[f"{split}_images"][idx]
        out[f"{split}_labels"] = src[f"{split}_labels"][idx]
    np.savez_compressed(TARGET, **out)
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB)",
          {k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
