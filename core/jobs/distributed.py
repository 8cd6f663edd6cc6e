"""Data-parallel training on ``torch.distributed``: process group, ranks, the global batch split
over ranks, gradients and batch statistics summed over ranks, rank-0 side effects, cancel.

Launch with ``torchrun --nproc-per-node N -m core.cli train METHOD ...`` (multi-node: add
``--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` on every node) or, on one node,
``latentmap train METHOD ... --nproc N`` (which calls ``torch.distributed.run`` itself). Every
rank runs the same method code; NCCL is the backend on GPUs, Gloo on CPUs.

The scheme keeps a run on W ranks the same computation as on one process with the same global
batch (the equivalence tests check parameters after a few steps):

* every rank draws the same seeded order and the same global batch of indices each step, and
  forwards only its contiguous block of it (``local_rows``); augmentations are drawn for the
  whole global batch from the step's generator and sliced, so each sample sees the same
  augmentation at any world size;
* losses see the global batch: each rank forwards its rows (``local_rows`` / ``local_batch``)
  and gathers every rank's outputs back (``gather_rows`` / ``global_batch``, through
  ``torch.distributed.nn.functional.all_gather``, which carries gradients back to the rank that
  produced each row), then computes the one-process loss. PICA's partition-uncertainty matrix
  and prior, SimCLR's negatives, FixMatch's labelled / unlabelled parts (``global_parts``: each
  rank forwards its share of both), every mean over the batch;
* DeepDiffusion's memory is whole on every rank and updated identically: each rank's LMR loss
  (a sum over rows, kNN over the whole memory) covers its rows, and the encoder's and memory's
  gradients are summed (``sync_gradients(reduce="sum")``); DeepCluster's features are extracted
  in shards (``local_share``, ``gather_array``) and k-means runs on rank 0 (``on_main``);
* batch statistics are global: ``sync_batchnorm`` swaps BatchNorm for ``torch.nn.SyncBatchNorm``
  on GPUs and for ``GlobalBatchNorm`` (same statistics through the same autograd all-gather) on
  CPUs, where PyTorch's SyncBatchNorm refuses to run;
* after ``backward`` the gradients are averaged over ranks (``sync_gradients``), the
  all-reduce DistributedDataParallel performs. Methods here run several forward passes per
  step (two views, alternating heads), which the DDP wrapper's reducer does not support; the
  arithmetic is the same. ``wrap_ddp`` is there for single-forward training loops.

Each rank's loss is written so that the global objective is the mean of the ranks' losses (the
same global loss on every rank, from the gathered outputs) or, with ``reduce="sum"``, their sum
(DeepDiffusion); the autograd collectives sum over ranks and ``sync_gradients`` divides by W (or
not), which gives exactly the one-process gradient. Layers that compute BatchNorm statistics
themselves (PointNet's fused max-pooled layers) are unfused by ``sync_batchnorm``. Dropout masks
are drawn per rank from independent streams (the same in distribution as one process's, not
bitwise the same).
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

__all__ = ["Context", "launched", "init", "shutdown", "active", "rank", "world_size", "is_main",
           "local_rows", "local_share", "local_batch", "global_batch", "global_parts", "sum_over_ranks", "gather_array",
           "prepare_all", "on_main", "gather_rows", "gather_repeated", "all_gather_array", "sync_gradients",
           "sync_batchnorm", "local_batchnorm", "broadcast_module", "prepare", "any_rank", "barrier", "distributed_sampler",
           "wrap_ddp", "GlobalBatchNorm", "launch_local", "RankJob"]


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str


_CTX: Context | None = None

# The autograd all-gather of torch.distributed.nn is marked deprecated in favour of a private
# module (torch.distributed._functional_collectives); it is the public, documented one.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")


#: registry names whose training loop splits the global batch over ranks (any other name would
#: train on everything on every rank, so it is refused rather than silently duplicated)
DATA_PARALLEL = {"pica", "deepdiffusion", "deepcluster", "fixmatch", "residual-ssl", "simclr", "byol",
                 "simsiam", "masked"}
#: fine-tuners (``latentmap finetune``) that do
DATA_PARALLEL_FINETUNERS = {"cluster-head", "residual-ssl"}


def check_supported(method_name: str, table: str = "methods") -> None:
    known = DATA_PARALLEL if table == "methods" else DATA_PARALLEL_FINETUNERS
    if method_name not in known:
        raise ValueError(f"{method_name} does not train data-parallel yet (supported: "
                         f"{', '.join(sorted(known))}); train it on one process")


# --------------------------------------------------------------------------- process group
def launched() -> bool:
    """True inside a process started by torchrun (or ``--nproc``) with more than one rank."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto", *, timeout_s: float = 600.0) -> Context:
    """Join the process group torchrun described in the environment (idempotent).

    NCCL on CUDA (one GPU per local rank), Gloo on CPU. ``device`` is the method's device
    choice: "cpu" forces Gloo even where GPUs exist."""
    global _CTX
    import torch
    import torch.distributed as dist

    if _CTX is not None:
        return _CTX
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is available")
    backend = "nccl" if use_cuda else "gloo"
    dev = f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(torch.device(dev))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    _CTX = Context(dist.get_rank(), dist.get_world_size(), local_rank, backend, dev)
    return _CTX


def shutdown() -> None:
    """Leave the process group; every rank calls it once its collective work is done.

    The ranks first meet at a barrier, so that no rank closes its connections while another is
    still running (a rank that tore Gloo down while rank 0 was still writing its results was
    seen to abort at exit: "terminate called without an active exception")."""
    global _CTX
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
    _CTX = None


def context() -> Context | None:
    return _CTX


def active() -> bool:
    """A process group of more than one rank is up."""
    return _CTX is not None and _CTX.world_size > 1


def rank() -> int:
    return _CTX.rank if _CTX is not None else 0


def world_size() -> int:
    return _CTX.world_size if _CTX is not None else 1


def is_main() -> bool:
    return rank() == 0


def device(default):
    """The device this rank trains on when distributed (its GPU or the CPU), else ``default``."""
    if _CTX is None:
        return default
    import torch

    return torch.device(_CTX.device)


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- the global batch
def local_rows(n: int) -> slice:
    """This rank's contiguous block of a global batch of ``n`` rows (all of it on one process).

    The global batch must split evenly, so that every rank's mean loss has the same weight."""
    w = world_size()
    if n % w:
        raise ValueError(f"a global batch of {n} does not split evenly over {w} processes: "
                         f"choose a batch size divisible by {w}")
    m = n // w
    return slice(rank() * m, (rank() + 1) * m)


def local_share(n: int) -> slice:
    """This rank's contiguous block of ``n`` rows when they need not split evenly (the first
    ``n % W`` ranks take one row more): the last, larger batch of an epoch, sharded passes
    over a data set. All of it on one process."""
    w, r = world_size(), rank()
    m, extra = divmod(int(n), w)
    start = r * m + min(r, extra)
    return slice(start, start + m + (1 if r < extra else 0))


def _share_sizes(n: int) -> list[int]:
    m, extra = divmod(int(n), world_size())
    return [m + (1 if r < extra else 0) for r in range(world_size())]


def local_batch(*arrays):
    """This rank's rows (``local_share``) of each of ``arrays``, all global batches of the same
    length: ``x, idx = local_batch(x, idx)``. The arrays themselves on one process."""
    if not active():
        return arrays if len(arrays) > 1 else arrays[0]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"local_batch: arrays of different lengths {[len(a) for a in arrays]}")
    s = local_share(n)
    out = tuple(a[s] for a in arrays)
    return out if len(out) > 1 else out[0]


def global_batch(*tensors):
    """Every rank's rows of each of ``tensors`` (this rank's ``local_batch`` outputs) gathered
    back into the global batch, in order, WITH gradients: the gradient of every rank's copy of
    the global loss flows back to the rank that produced each row. With the same global loss
    on every rank, ``sync_gradients`` then gives exactly the one-process gradient (the autograd
    all-gather sums the W copies, the average divides by W). Uneven shares are padded for the
    collective and cut back. Identity on one process."""
    if not active():
        return tensors if len(tensors) > 1 else tensors[0]
    import torch
    import torch.distributed.nn.functional as dnn

    import torch.distributed as dist

    # every rank's row count of every tensor, in one small collective
    mine = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64,
                        device=_CTX.device if _CTX.backend == "nccl" else "cpu")
    counts = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(counts, mine)
    counts = torch.stack(counts).cpu().numpy()
    out = []
    for j, x in enumerate(tensors):
        m = x.shape[0]
        sizes = [int(v) for v in counts[:, j]]
        top = max(sizes)
        xp = x if m == top else torch.cat([x, x.new_zeros((top - m, *x.shape[1:]))], 0)
        parts = dnn.all_gather(xp.contiguous())
        out.append(torch.cat([p[:k] for p, k in zip(parts, sizes)], 0))
    return tuple(out) if len(out) > 1 else out[0]


def global_parts(t, sizes):
    """A forward pass over several local parts stacked (e.g. FixMatch's labelled, weak and
    strong rows of this rank, ``sizes`` rows each) -> the same parts of the global batch,
    stacked in the same order, with gradients (``global_batch`` of each part)."""
    if not active():
        return t
    import torch

    parts = torch.split(t, [int(k) for k in sizes], 0)
    return torch.cat(global_batch(*parts) if len(parts) > 1 else [global_batch(parts[0])], 0)


def sum_over_ranks(*values):
    """Sums over ranks of scalar tensors or numbers (detached; for what a step reports, e.g. a
    loss summed over the global batch). The values themselves on one process."""
    if not active():
        return values if len(values) > 1 else values[0]
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(v.detach()) if hasattr(v, "detach") else float(v) for v in values],
                     dtype=torch.float64, device=_CTX.device if _CTX.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    out = tuple(torch.as_tensor(v.item()) for v in t.cpu())
    return out if len(out) > 1 else out[0]


def gather_array(a: np.ndarray) -> np.ndarray:
    """``all_gather_array``: each rank's block of a sharded pass, concatenated (identity on one
    process). With ``local_share`` blocks the result is the one-process array."""
    return all_gather_array(a)


def local_rows_repeated(n: int, repeat: int):
    """Row indices of this rank's share of ``repeat`` stacked copies of an n-row batch
    (``[1..n, 1..n, ...]``): its block within every copy, copies kept together."""
    s = local_rows(n)
    return np.concatenate([np.arange(s.start, s.stop) + c * n for c in range(repeat)])


def gather_rows(x):
    """Concatenate every rank's rows in rank order, with gradients flowing back to each rank."""
    if not active():
        return x
    import torch
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), 0)


def gather_repeated(x, repeat: int):
    """Gather ``repeat`` stacked copies of each rank's block (``local_rows_repeated`` order) into
    ``repeat`` stacked copies of the global batch, with gradients."""
    if not active():
        return x
    import torch
    import torch.distributed.nn.functional as dnn

    parts = dnn.all_gather(x.contiguous())
    m = x.shape[0] // repeat
    blocks = [p.reshape(repeat, m, *x.shape[1:]) for p in parts]
    return torch.cat(blocks, 1).reshape(repeat * m * len(parts), *x.shape[1:])


def all_gather_array(a: np.ndarray) -> np.ndarray:
    """Every rank's rows of a NumPy array (sizes may differ), concatenated in rank order."""
    if not active():
        return a
    import torch.distributed as dist

    out = [None] * world_size()
    dist.all_gather_object(out, np.ascontiguousarray(a))
    return np.concatenate(out, 0)


def broadcast_object(obj, src: int = 0):
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` computed on rank 0 alone and its result sent to every rank (e.g.
    DeepCluster's k-means of the gathered features); a plain call on one process."""
    if not active():
        return fn(*args, **kwargs)
    return broadcast_object(fn(*args, **kwargs) if is_main() else None)


def distributed_sampler(n: int, *, seed: int, epoch: int, drop_last: bool = False):
    """``torch.utils.data.DistributedSampler`` over ``range(n)`` with the run's seed, at ``epoch``."""
    from torch.utils.data import DistributedSampler

    s = DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=True,
                           seed=int(seed), drop_last=drop_last)
    s.set_epoch(int(epoch))
    return s


# --------------------------------------------------------------------------- gradients, BN
def sync_gradients(params, reduce: str = "mean") -> None:
    """Average the gradients of ``params`` (a module, an optimizer or an iterable of parameters)
    over ranks, in flat buckets, as DistributedDataParallel's reducer does after ``backward``.

    ``reduce="sum"`` sums them instead: for a loss that is a SUM over the rows of the batch,
    computed by each rank over its own rows (DeepDiffusion's LMR loss), whose global value is
    the sum of the ranks' losses."""
    if reduce not in ("mean", "sum"):
        raise ValueError(f"sync_gradients: reduce must be 'mean' or 'sum', got {reduce!r}")
    if not active():
        return
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    elif hasattr(params, "param_groups"):  # an optimizer: everything it steps
        params = [p for g in params.param_groups for p in g["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    w = world_size()
    by_kind: dict = {}
    for g in grads:
        by_kind.setdefault((g.dtype, g.device), []).append(g)
    for group in by_kind.values():
        for bucket in _buckets(group, 25 * 2 ** 20):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            if reduce == "mean":
                flat /= w
            for g, v in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                g.copy_(v)


def _buckets(tensors, max_bytes):
    cur, size = [], 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if cur and size + nbytes > max_bytes:
            yield cur
            cur, size = [], 0
        cur.append(t)
        size += nbytes
    if cur:
        yield cur


def broadcast_module(module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start)."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any of them (one small all-reduce)."""
    if not active():
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32,
                     device=_CTX.device if _CTX.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@functools.lru_cache(maxsize=1)
def _global_batchnorm_cls():
    import torch
    import torch.distributed.nn.functional as dnn
    from torch.nn.modules.batchnorm import _BatchNorm

    class GlobalBatchNorm(_BatchNorm):
        """BatchNorm whose training statistics are over the global batch of all ranks.

        Same parameters, buffers and state-dict keys as ``nn.BatchNorm1d/2d/3d``; statistics
        are a two-pass mean and biased variance over every rank's rows (sums gathered with
        gradients), the running variance unbiased over the global count, as SyncBatchNorm."""

        def _check_input_dim(self, x):
            if x.dim() < 2:
                raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

        def forward(self, x):
            if not (self.training and _sync_bn_wanted()):
                return super().forward(x)
            dims = [0] + list(range(2, x.dim()))
            shape = [1, -1] + [1] * (x.dim() - 2)
            # local sums and row counts gathered together (shares may differ by a row)
            # (in at least float32: a bfloat16 count would round)
            acc = torch.promote_types(x.dtype, torch.float32)
            n_local = torch.full((1,), float(x.numel() // x.shape[1]), dtype=acc, device=x.device)
            both = torch.stack(dnn.all_gather(torch.cat([x.sum(dims).to(acc), n_local]))).sum(0)
            total, count = both[:-1].to(x.dtype), float(both[-1].detach())
            mean = total / count
            xc = x - mean.view(shape)
            sq = torch.stack(dnn.all_gather((xc * xc).sum(dims))).sum(0)
            var = sq / count
            y = xc * torch.rsqrt(var + self.eps).view(shape)
            if self.affine:
                y = y * self.weight.view(shape) + self.bias.view(shape)
            if self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                         else self.momentum)
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    unbiased = var.detach() * (count / max(count - 1, 1))
                    self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
            return y

    return GlobalBatchNorm


def __getattr__(name):
    if name == "GlobalBatchNorm":
        return _global_batchnorm_cls()
    raise AttributeError(name)


_BN_LOCAL = [0]


@contextlib.contextmanager
def local_batchnorm():
    """BatchNorm statistics from this rank's rows only, inside the block: for passes every
    rank makes over the same data (precise-BN recalibration), where the local statistics are
    already the global ones and a synchronised pass would count every row once per rank."""
    _BN_LOCAL[0] += 1
    try:
        yield
    finally:
        _BN_LOCAL[0] -= 1


def _sync_bn_wanted() -> bool:
    return active() and not _BN_LOCAL[0]


@functools.lru_cache(maxsize=1)
def _local_capable_sync_bn():
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    class SyncBatchNorm(torch.nn.SyncBatchNorm):
        """torch's SyncBatchNorm, local inside ``local_batchnorm()``."""

        def forward(self, x):
            if _BN_LOCAL[0]:
                return _BatchNorm.forward(self, x)
            return super().forward(x)

    return SyncBatchNorm


def sync_batchnorm(module):
    """Make every BatchNorm of ``module`` use global-batch statistics when distributed (in place
    where possible; returns the module). The same Parameter objects are kept, so an optimizer
    built before still updates them."""
    if not active():
        return module
    import torch

    cls = _local_capable_sync_bn() if _CTX.backend == "nccl" else _global_batchnorm_cls()
    for m in module.modules():
        if hasattr(m, "set_fused"):
            # layers that compute their BatchNorm's statistics themselves (PointNet's fused
            # max-pooled Linear + BatchNorm + ReLU) run as the plain composition, so that the
            # statistics go through the global BatchNorm (same parameters and state dict)
            m.set_fused(False)
    return _convert(module, cls)


def _convert(module, cls):
    from torch.nn.modules.batchnorm import _BatchNorm

    if isinstance(module, _BatchNorm) and not isinstance(module, cls):
        new = cls(module.num_features, module.eps, module.momentum, module.affine,
                  module.track_running_stats)
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        # hooks move along (e.g. bn_warm_start's momentum schedule), which
        # SyncBatchNorm.convert_sync_batchnorm would drop
        new._forward_pre_hooks.update(module._forward_pre_hooks)
        new._forward_hooks.update(module._forward_hooks)
        return new
    for name, child in module.named_children():
        new = _convert(child, cls)
        if new is not child:
            setattr(module, name, new)
    return module


def prepare(module):
    """Ready a method's model for data-parallel steps (no-op on one process): global-batch
    BatchNorm and rank 0's weights on every rank."""
    if not active():
        return module
    import torch

    module = sync_batchnorm(module)
    broadcast_module(module)
    if rank() != 0:
        # the global RNG only draws dropout masks during training (augmentations and orders
        # have their own seeded generators): rank 0 keeps the run's stream, which its checkpoint
        # records, the other ranks draw independent masks for their rows
        torch.manual_seed(int(np.random.SeedSequence([torch.initial_seed() & 0xFFFFFFFF, rank()])
                              .generate_state(1)[0]))
    return module


def prepare_all(*modules) -> None:
    """``prepare`` for several modules of one method, each converted in place (the method keeps
    its references; none of them may itself be a BatchNorm layer)."""
    for m in modules:
        if m is not None and prepare(m) is not m:
            raise TypeError(f"prepare_all: {type(m).__name__} cannot be converted in place")


def wrap_ddp(module, **kw):
    """``DistributedDataParallel(module)`` on this rank's device (the module itself when not
    distributed), for training loops with one forward per step."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(_CTX.device.split(":")[1])] if _CTX.backend == "nccl" else None
    return DistributedDataParallel(module, device_ids=ids, **kw)


# --------------------------------------------------------------------------- jobs
class _RankSteps:
    """Delegates to a method; after each step its ``steps`` asks every rank whether any of them
    was asked to cancel, and then all raise ``Cancelled`` together (the state after that step
    is what rank 0 checkpoints)."""

    def __init__(self, method, job_ref):
        self._method = method
        self._job_ref = job_ref

    def __getattr__(self, name):
        return getattr(self._method, name)

    def steps(self, data, *, resume=None):
        from .job import Cancelled

        gen = self._method.steps(data, resume=resume)
        try:
            for p in gen:
                yield p
                job = self._job_ref()
                if any_rank(job is not None and job.cancel_requested):
                    raise Cancelled()
        finally:
            gen.close()


def RankJob(method, data, *, project=None, **kw):
    """A ``core.jobs.Job`` for this rank: rank 0 records the run, writes checkpoints and reports
    progress; the other ranks train without side effects. ``cancel()`` on any rank (a signal,
    a callback) stops every rank after the same step: the request is only recorded, and the
    ranks agree on it after each step."""
    import weakref

    from .job import Job

    if not active():
        return Job(method, data, project=project, **kw)

    class _Job(Job):
        _rank_cancel = False

        def cancel(self) -> None:
            self._rank_cancel = True   # the ranks act on it together, after this step

        @property
        def cancel_requested(self) -> bool:
            return self._rank_cancel or self._cancel.is_set()

    if not is_main():
        kw = {k: v for k, v in kw.items() if k not in ("checkpoint_path", "run_id", "on_status")}
        project = None
    holder: list = []
    job = _Job(_RankSteps(method, lambda: holder[0]() if holder else None), data, project=project,
               **kw)
    holder.append(weakref.ref(job))
    return job


# --------------------------------------------------------------------------- launcher
def rank_argv(args, command: str = "train") -> list[str]:
    """The ``latentmap`` arguments that run the same training on every rank (without --nproc)."""
    argv = [command, args.method, "--project", str(args.project)]
    for item in args.set or []:
        argv += ["--set", item]
    if args.dataset:
        argv += ["--dataset", args.dataset]
    if args.resume is not None:
        argv += ["--resume", str(args.resume)]
    if args.no_embed:
        argv.append("--no-embed")
    return argv


def launch_local(nproc: int, argv: list[str], *, module: str = "core.cli") -> int:
    """Run ``python -m module argv...`` on ``nproc`` local ranks through ``torch.distributed.run``
    (``--standalone``: a rendezvous on a free local port). Returns the launcher's exit status."""
    from torch.distributed import run as torchrun

    args = ["--nproc-per-node", str(int(nproc)), "--standalone", "-m", module, *argv]
    try:
        torchrun.main(args)
    except SystemExit as exc:  # torchrun exits on failure with the child's status
        return int(exc.code or 0)
    except Exception as exc:  # ChildFailedError: the children's tracebacks are already printed
        print(f"distributed run failed: {exc}")
        return 1
    return 0
