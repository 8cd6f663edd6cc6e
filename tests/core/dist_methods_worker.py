"""One rank of the every-method distributed-equivalence run (started by
tests/core/test_distributed_methods.py, alone or under torchrun): train each listed method or
fine-tuner a few steps on real shared data in float64 and save rank 0's complete training state
(weights, optimizer moments, memory, pseudo-labels: every numeric array of ``state_dict()``).

    python -m tests.core.dist_methods_worker OUT_DIR CASES_JSON

CASES_JSON: a list of {"name", "method", "table" ("methods" | "finetuners"), "data" ("organ" |
"slices" | "volumes" | "points"), "params", optional "run": {"checkpoint": path, "resume": path,
"cancel_rank": r, "cancel_step": s}}. Each case writes OUT_DIR/NAME.npz and NAME.json (status,
global steps, reported losses). One process start-up serves every case.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _float64() -> None:
    """Everything in float64, so that 1 and N processes differ only by summation order: the
    models are built in the default dtype, the inputs are cast where they become tensors."""
    import torch

    torch.set_default_dtype(torch.float64)
    import numpy as np

    from core.methods import augment2d, deepdiffusion, residual_ssl, ssl_baselines

    as_points = deepdiffusion._as_points
    deepdiffusion._as_points = lambda data, where="DeepDiffusion": as_points(data, where).astype(np.float64)

    to_unit = augment2d.to_unit_tensor
    augment2d.to_unit_tensor = lambda x, device=None: to_unit(x, device).to(torch.float64)
    to_vol = ssl_baselines.volumes_to_tensor
    ssl_baselines.volumes_to_tensor = residual_ssl.volumes_to_tensor = lambda x: to_vol(x).to(torch.float64)


def _data(kind: str):
    import numpy as np

    from core.dataset import SampleSet
    from tests.conftest import DATA, need, organamnist_per_class

    if kind == "organ":
        return organamnist_per_class(2).subset(np.arange(16))
    if kind == "slices":
        from core.data_multilabel import totalseg_slices

        return totalseg_slices(need(DATA / "totalseg_example"), size=(32, 32))
    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    xs, ys, sp = [], [], []
    for split, n, k in (("train", 10, 3), ("val", 4, 2), ("test", 2, 1)):
        y = d[f"{split}_labels"].ravel()
        pick = np.concatenate([np.flatnonzero(y == 0)[: n - k], np.flatnonzero(y == 1)[:k]])
        xs.append(d[f"{split}_images"][pick])
        ys.append(y[pick].astype(int))
        sp += [split] * len(pick)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if kind == "points":
        from core.preprocess.shapes import mask_to_points

        x = np.stack([mask_to_points(m > 0, 64, seed=i) for i, m in enumerate(x)])
    return SampleSet(ids=np.array([f"v{i}" for i in range(len(x))]), x=x, y=y,
                     label_names=["vessel", "aneurysm"], split=np.array(sp))


def _arrays(state, prefix: str = "", out=None) -> dict:
    """Every numeric array of a (nested) state dict, by path; RNG states left out."""
    import numpy as np
    import torch

    out = {} if out is None else out
    if isinstance(state, dict):
        for k, v in state.items():
            if "rng" not in str(k):
                _arrays(v, f"{prefix}{k}/", out)
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            _arrays(v, f"{prefix}{i}/", out)
    elif isinstance(state, torch.Tensor) and (state.is_floating_point() or state.dtype == torch.int64):
        out[prefix.rstrip("/")] = state.detach().cpu().double().numpy()
    elif isinstance(state, np.ndarray) and state.dtype.kind in "fi":
        out[prefix.rstrip("/")] = state.astype(np.float64)
    return out


def main(argv=None) -> int:
    import numpy as np
    import torch

    from core.jobs import distributed as dist
    from core.methods.registry import get_finetuner, get_method

    out_dir, cases = (argv or sys.argv[1:])[:2]
    torch.set_num_threads(1)
    _float64()
    if dist.launched():
        dist.init("cpu")
    cache: dict = {}
    for case in json.loads(cases):
        run = case.get("run") or {}
        cls = (get_method if case.get("table", "methods") == "methods" else get_finetuner)(case["method"])
        # DeepDiffusion: from the reference's settings, whatever the defaults are
        method = cls(**{**getattr(cls, "REFERENCE", {}), **case["params"]})
        if case["data"] not in cache:
            cache[case["data"]] = _data(case["data"])

        def on_progress(p, run=run):
            if dist.rank() == run.get("cancel_rank") and p.global_step == run.get("cancel_step"):
                job.cancel()

        job = dist.RankJob(method, cache[case["data"]], checkpoint_path=run.get("checkpoint"),
                           resume=run.get("resume"), on_progress=on_progress)
        t0 = time.perf_counter()
        job.run()
        if dist.is_main():
            base = Path(out_dir) / case["name"]
            np.savez(f"{base}.npz", **_arrays(method.state_dict()))
            steps = [p for p in job.history if p.losses]
            Path(f"{base}.json").write_text(json.dumps({
                "status": job.status, "message": job.message, "seconds": time.perf_counter() - t0,
                "steps": [p.global_step for p in steps], "losses": [p.losses for p in steps]}))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
