"""Shared fixtures: where the shared data and reference vectors are, and the Qt platform."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LATENTMAP_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or renders for more than a few seconds")
    # pytest-xvfb has started its virtual display before trylast hooks run; VTK, napari and vispy
    # render only on xcb (Qt's offscreen platform cannot), so use xcb whenever a display exists.
    if os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "xcb"
    else:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a busy 2-core runner, 2 threads of small convolutions
    spin-wait and run many times slower. Restored afterwards for the other modules."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (clone with ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need(DATA)


@pytest.fixture(scope="session")
def reference() -> Path:
    return need(REFERENCE)


def load_reference(name: str):
    import numpy as np

    return np.load(need(REFERENCE / name), allow_pickle=False)


def organamnist_per_class(n: int = 2):
    """The first ``n`` training images of each of OrganAMNIST's 11 organs, as a SampleSet read
    straight from the MedMNIST file (skips when the shared data is absent)."""
    import numpy as np

    from core.dataset import SampleSet

    d = np.load(need(DATA / "organamnist" / "organamnist.npz"))
    y = d["train_labels"][:, 0].astype(int)
    idx = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(11)])
    return SampleSet(ids=[f"organamnist/train/{i:05d}" for i in idx], x=d["train_images"][idx], y=y[idx],
                     label_names=[str(c) for c in range(11)], split=np.array(["train"] * len(idx)))
