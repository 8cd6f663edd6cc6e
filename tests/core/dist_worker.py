"""One rank of a distributed-equivalence run (started by tests/core/test_distributed.py, alone or
under torchrun): train METHOD a few steps on real images and save rank 0's parameters.

    python -m tests.core.dist_worker METHOD OUT.npz '{"batch_size": 8, ...}'
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

    method_name, out, params = argv or sys.argv[1:]
    torch.set_num_threads(1)
    # float64 so that 1 and N processes differ only by float64 summation order: the model is
    # built in the default dtype and the images are cast to it where they become tensors
    torch.set_default_dtype(torch.float64)
    from core.methods import augment2d

    to_unit = augment2d.to_unit_tensor
    augment2d.to_unit_tensor = lambda x, device=None: to_unit(x, device).to(torch.float64)
    if dist.launched():
        dist.init("cpu")
    method = get_method(method_name)(**json.loads(params))
    data = organamnist_per_class(2)
    job = dist.RankJob(method, data)
    job.run()
    if dist.is_main():
        print("LOSSES", [round(p.losses["loss"], 6) for p in job.history], job.status, job.error)
    if dist.is_main():
        state = {k: v.detach().double().numpy() for k, v in method.model_.state_dict().items()
                 if v.is_floating_point()}
        np.savez(out, **state)
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
