"""One rank of a distributed-equivalence run (started by tests/core/test_distributed.py, alone or
under torchrun): train METHOD a few steps on real OrganAMNIST images in float64 and save rank
0's parameters.

    python -m tests.core.dist_worker METHOD OUT.npz PARAMS_JSON [RUN_JSON]

RUN_JSON (optional): {"checkpoint": path, "resume": path, "cancel_rank": r, "cancel_step": s}
-- rank r asks its job to cancel after step s (the other ranks must stop at the same step).
"""
from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    import numpy as np
    import torch

    from core.jobs import distributed as dist
    from core.methods.registry import get_method
    from tests.conftest import organamnist_per_class

    argv = list(argv or sys.argv[1:])
    method_name, out, params = argv[:3]
    run = json.loads(argv[3]) if len(argv) > 3 else {}
    torch.set_num_threads(1)
    # float64 so that 1 and N processes differ only by float64 summation order: the model is
    # built in the default dtype and the images are cast to it where they become tensors
    torch.set_default_dtype(torch.float64)
    from core.methods import augment2d

    to_unit = augment2d.to_unit_tensor
    augment2d.to_unit_tensor = lambda x, device=None: to_unit(x, device).to(torch.float64)
    from core.models import heads

    if hasattr(heads.ClusterNet, "head_input"):  # its feature BatchNorm casts to float32 (autocast)
        heads.ClusterNet.head_input = lambda self, f: f if self.norm is None else self.norm(f)
    if dist.launched():
        dist.init("cpu")
    method = get_method(method_name)(**json.loads(params))
    data = organamnist_per_class(2)

    def on_progress(p):
        if dist.rank() == run.get("cancel_rank") and p.global_step == run.get("cancel_step"):
            job.cancel()

    job = dist.RankJob(method, data, checkpoint_path=run.get("checkpoint"),
                       resume=run.get("resume"), on_progress=on_progress)
    job.run()
    # phase markers on stderr: a crash report then says how far each rank got
    print(f"rank {dist.rank()}: {job.status} after {len(job.history)} reports", file=sys.stderr, flush=True)
    if dist.is_main():
        state = {k: v.detach().double().numpy() for k, v in method.model_.state_dict().items()
                 if v.is_floating_point()}
        np.savez(out, **state)
        steps = [p for p in job.history if p.losses]  # optimisation steps (not loading progress)
        json.dump({"status": job.status, "steps": [p.global_step for p in steps],
                   "losses": [p.losses for p in steps]}, open(out + ".json", "w"))
    rank = dist.rank()
    dist.shutdown()
    print(f"rank {rank}: left the process group", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
