"""Data-parallel training with PyTorch's DDP, started by ``torchrun``.

    torchrun --nproc_per_node 2 -m fervid train --config configs/cpu-fast.yaml --data fer2013.csv.gz --out runs/x
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m fervid train ...

:func:`fervid.training.loop.train` reads torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) through :func:`setup`; without it (or with
``WORLD_SIZE=1``) it is the ordinary single-process loop. The process group uses **gloo** on
the CPU and **NCCL** on GPUs (one GPU per process, ``cuda:LOCAL_RANK``).

What a run with N processes computes -- the same as one process, by construction:

- **Global batch.** ``TrainConfig.batch_size`` is the *global* batch: every step takes the
  next ``batch_size`` indices of one epoch order that every rank derives from ``(seed,
  epoch)``, and rank ``r`` of ``N`` trains on rows ``[B*r//N, B*(r+1)//N)`` of it. The number
  of steps per epoch, the learning-rate schedule and the optimiser state therefore do not
  depend on N, and the same config gives the same run on 1, 2 or 64 processes.
- **Learning rate.** Because the global batch does not change with N, the learning rate
  does not either (no automatic scaling). To train with a larger global batch on more
  devices, scale ``lr`` linearly with ``batch_size`` and keep the warm-up (Goyal et al. 2017,
  "Accurate, Large Minibatch SGD"): e.g. ``batch_size`` 128 -> 1024 with SGD: ``lr`` 0.05 -> 0.4,
  ``warmup_epochs`` >= 1.
- **Loss.** Each rank's loss is scaled so that DDP's gradient average equals the gradient of
  the global-batch loss: a plain mean over rows is multiplied by ``N * b_r / B``; the
  class-weighted cross-entropy (``inverse``/``effective``/``dynamic``), a mean weighted by
  ``sum w[y]``, by ``N * sum_r w[y] / sum_all w[y]`` (one all-reduce of a scalar per step).
- **BatchNorm** statistics are those of the global batch: ``nn.SyncBatchNorm`` on GPUs, and on
  the CPU (where PyTorch's SyncBatchNorm has no kernels) :class:`CPUSyncBatchNorm`, the same
  computation written with differentiable all-reduces.
- **Sampler.** The imbalance strategies act on that one global order: ``oversample`` and
  ``minority-aug`` draw it from the per-sample weights of the whole training set (every rank
  holds the labels, so the class counts are those of all ranks), ``dynamic`` re-weights from
  PublicTest recall, which each rank computes on its share of PublicTest and all-reduces (every
  rank ends with the same weights). Augmentation parameters are drawn for the whole global
  batch and each rank uses its rows'. Exceptions, statistically equivalent but not equal:
  dropout masks (the global RNG is seeded per rank) and mixup/CutMix partners (drawn within
  each rank's share).
- **Outputs.** Only rank 0 writes the run directory (``config.json``, ``metrics.jsonl`` once
  per epoch, ``last.pt``, ``best.pt``, ``final.json``) and prints; checkpoints hold the plain
  model (no ``module.`` prefix, ordinary BatchNorm keys), so ``fervid evaluate``/``predict``
  load them as any other. ``--resume`` reads ``last.pt`` on rank 0 and broadcasts it, so a run
  resumes with the same or another number of processes (the global batch, and with it the
  sample order, stays the same); only rank 0's file system needs the run directory. The
  data must be readable at the same path on every node.

Numbers (this 2-core machine, and what they do and do not show): BENCHMARKS.md.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from fervid.errors import UserValueError
from fervid.runtime import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank ``rank`` of ``world_size`` (1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # this module created the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from torchrun's environment (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Rank 0 (or a process not started by torchrun): the one that writes and prints."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def setup(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """The process group from torchrun's environment variables, and this rank's device.

    Gloo on the CPU, NCCL on CUDA (``cuda:LOCAL_RANK``). A process group that already exists
    (a caller that set one up itself) is used as it is and left open.
    """
    device = resolve_device(device_name)
    existing = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if existing else env_world_size()
    if world <= 1:
        return DistContext(), device
    if not dist.is_available():
        raise UserValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserValueError(f"distributed training runs on CPUs (gloo) or CUDA GPUs (NCCL), not {device.type}")
    if existing:
        return DistContext(dist.get_rank(), world, local_rank, str(dist.get_backend()), owns_group=False), device
    backend = "nccl" if device.type == "cuda" else "gloo"
    # device_id binds NCCL to this rank's GPU at once (no guessing in barrier()).
    kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, **kwargs)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, owns_group=True), device


def teardown(ctx: DistContext, *, finished: bool = True) -> None:
    """Close the process group this run opened, on every rank together.

    The barrier keeps a rank from closing its sockets while a peer is still sending (gloo's
    I/O threads abort the process on a reset connection), and the collection before the
    destroy frees the DDP reducer and its pending work objects now: left to the interpreter's
    finalisation, gloo's threads could touch tensors after Python is gone and the process
    ends in SIGABRT although the run had finished (seen once in CI, rank 0, after the
    summary was printed). After a failure (``finished=False``) there is no barrier: a rank
    that failed alone must not wait for peers that may never come."""
    if ctx.owns_group and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def shard_rows(n: int, ctx: DistContext) -> torch.Tensor:
    """This rank's rows ``[n*r//N, n*(r+1)//N)`` of a global batch of ``n`` (all rows when alone)."""
    return torch.arange(n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size)


def all_reduce(t: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` or ``max``) across ranks; a no-op when alone."""
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; for checkpoints and result dicts)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main(fn: Callable[[], T], ctx: DistContext, *, share: bool = True) -> T:
    """``fn()`` on rank 0 only (reading or writing the run directory), its result sent to every
    rank (``share=False``: only whether it failed). An exception on rank 0 is raised on every
    rank, so a user error stops all processes with the same message instead of leaving the
    others waiting in a collective."""
    if not ctx.enabled:
        return fn()
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
    sent = broadcast_object((result if share else None, error), ctx)
    if error is not None:
        raise error
    if sent[1] is not None:
        raise sent[1]
    return result if ctx.is_main else sent[0]


def gather_rows(values: torch.Tensor, n: int, ctx: DistContext) -> torch.Tensor:
    """Per-row int64 results computed for rows ``rank::world_size`` of ``n``, assembled on
    every rank (an all-reduce of a zero-filled vector: each row is non-zero on one rank only)."""
    if not ctx.enabled:
        return values
    full = torch.zeros(n, dtype=torch.int64)
    full[ctx.rank :: ctx.world_size] = values.to(torch.int64).cpu()
    return all_reduce(full, ctx)


# --------------------------------------------------------------------------- BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is the sum over ranks of the gradients: the gradient of
    a global statistic reaches the inputs on every rank."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch for CPU tensors (PyTorch's ``nn.SyncBatchNorm`` needs
    CUDA kernels, and DDP refuses it on the CPU): in training, the mean and variance are those
    of all ranks' rows, from two all-reduces of per-channel sums (two passes: no
    E[x^2] - E[x]^2 cancellation), and the gradient flows through them to every rank. Running
    statistics are updated as ``nn.BatchNorm2d`` does (with the unbiased variance of the
    global batch). Alone, or in eval mode, it is plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else float(self.momentum)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input if input.dtype == torch.float64 else input.float()  # statistics in fp32 at least (bf16 autocast)
        count = torch.tensor([float(x.numel() // x.shape[1])], dtype=x.dtype)
        dist.all_reduce(count)
        mean = _AllReduceSum.apply(x.sum(dims), None) / count
        xc = x - mean.view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims), None) / count
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                n = float(count)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=factor)
        return y.to(input.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``model`` computing global-batch statistics: PyTorch's
    ``nn.SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` on the CPU. Parameters, buffers
    and ``state_dict`` keys are unchanged, so checkpoints stay ordinary."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
            m.__class__ = CPUSyncBatchNorm  # the same state (BatchNorm1d/2d/3d only differ in their input check)
    return model


def wrap(model: nn.Module, ctx: DistContext, device: torch.device, *, find_unused: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel (gradients averaged across ranks in buckets,
    overlapped with the backward pass)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused)


__all__ = [
    "DistContext",
    "all_reduce",
    "barrier",
    "broadcast_object",
    "env_world_size",
    "gather_rows",
    "is_main_process",
    "run_on_main",
    "setup",
    "shard_rows",
    "sync_batchnorm",
    "teardown",
    "wrap",
]
