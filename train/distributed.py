"""Training on several processes with torch.distributed (DESIGN §7), started by ``torchrun``.

``torchrun --standalone --nproc-per-node N -m asl_edge train ...`` starts N processes; each joins the
process group (gloo on CPUs, NCCL on GPUs, one GPU per process) and trains a DistributedDataParallel
copy of the network and its loss on its share of every global batch (``loader.batch_size`` is the
global batch). The loss is computed as one process would compute it on the whole batch: the positive
count behind the loss normaliser is summed over the processes, each process's sums are scaled so
that DDP's average of the gradients is the whole batch's gradient, and the contrastive loss (ASCL)
sees the segment vectors of every process (gathered with their gradients). Without torchrun,
:class:`World` is a single process and none of this runs: training is exactly the one-process loop.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..sharding import launched_by_torchrun, rank_device


@dataclass
class World:
    """The processes that train together. ``backend`` None: one process without torch.distributed
    (every method is then the identity or does nothing)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    size: int = 1
    backend: Optional[str] = None
    group: Any = None     # the process group of the loss's collectives, apart from DDP's own

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder and speaks (rank 0)."""
        return self.rank == 0

    def average(self, values: Dict[str, float]) -> Dict[str, float]:
        """``values`` averaged over the processes (the same keys on every process, in one order)."""
        if self.backend is None:
            return values
        stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(stacked, group=self.group)
        return dict(zip(values, (stacked / self.size).tolist()))

    def total(self, count: int) -> int:
        """``count`` summed over the processes."""
        if self.backend is None:
            return count
        value = torch.tensor([count], dtype=torch.int64, device=self.device)
        dist.all_reduce(value, group=self.group)
        return int(value.item())

    def gather_rows(self, tensor: Tensor) -> Tensor:
        """The rows of ``tensor`` of every process, rank by rank (row counts may differ); gradients
        flow back to each process's own rows."""
        if self.backend is None:
            return tensor
        rows = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
        counts = [torch.zeros_like(rows) for _ in range(self.size)]
        dist.all_gather(counts, rows, group=self.group)
        counts = [int(c.item()) for c in counts]
        longest = max(counts)
        if longest == 0:
            return tensor
        if tensor.is_floating_point() and not tensor.requires_grad:
            # a share without segments has no graph here: give it one, so that its backward gathers as the others' do
            tensor = tensor.detach().requires_grad_()
        padded = torch.cat([tensor, tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
        parts = _GatherRows.apply(padded, self.rank, self.size, self.group).split(longest)
        return torch.cat([part[:count] for part, count in zip(parts, counts)])

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.backend is not None:
            dist.barrier(group=self.group)

    def close(self) -> None:
        """Leave the process group (after a finished run)."""
        if self.backend is not None and dist.is_initialized():
            dist.destroy_process_group()

    def describe(self) -> Dict[str, Any]:
        """What the run folder records: ``world_size`` and ``backend``."""
        return {"world_size": self.size, "backend": self.backend}


class _GatherRows(torch.autograd.Function):
    """All-gather of equally long tensors, concatenated by rank; backward: the gradient of a
    process's rows summed over every process (each computed the loss of all rows)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, rank: int, size: int, group) -> Tensor:
        ctx.rank, ctx.rows, ctx.group = rank, tensor.shape[0], group
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None, None


class PeerStopped(RuntimeError):
    """This process stopped because another process of the run stopped (its own message says why)."""


def join_world(device: str) -> World:
    """This process's World for ``--device``: under torchrun it joins the process group — NCCL on
    ``cuda`` (the GPU of its local rank), gloo on ``cpu`` — and turns torchrun's SIGTERM (sent when
    another process fails) into an exception, so that files being written are cleaned up; otherwise
    a one-process World."""
    from ..compute import resolve_device

    resolved = resolve_device(rank_device(device))
    if not launched_by_torchrun():
        return World(device=resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group(backend, device_id=resolved if resolved.type == "cuda" else None)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return World(device=resolved, rank=dist.get_rank(), size=dist.get_world_size(), backend=backend,
                 group=dist.new_group(backend=backend))


def _stop_on_sigterm(number, frame) -> None:
    raise PeerStopped("stopped by SIGTERM (torchrun stops every process when one fails: see its message)")


def peer_lost(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because another process is gone."""
    text = str(err)
    return isinstance(err, (PeerStopped, dist.DistError)) or (
        isinstance(err, RuntimeError) and ("closed by peer" in text or "reset by peer" in text))


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of a process's own randomness (stochastic depth, dropout) in an epoch of a
    distributed run: it depends on the run's seed, the epoch and the rank only, so a resumed
    epoch draws what the uninterrupted one drew (at the same world size)."""
    return int(np.random.SeedSequence([seed % 2 ** 64, epoch, rank]).generate_state(1, np.uint64)[0] % 2 ** 63)
