"""Data-parallel training inside one torchrun rank: process group, shards, global sums, rank-0 writing.

torchrun starts one process per rank and tells each its place through environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). Each rank trains on its own shard of the
train and validation rows; DDP averages the gradients in backward. Every rank must take the
same decisions (steps, early stopping, L-BFGS line search, divergence), so every number that
drives a decision is a global sum computed by an all-reduce, identical on all ranks.

Shards differ in size by at most one row, so a rank's loss is its *share* of the global mean,
sum over its rows / rows on all ranks; backward runs on share × world size because DDP divides
the summed gradients by the world size. The gradient is then exactly the full data's, up to
floating-point summation order.

Importing this module imports no torch (one process never needs it); what talks to the
process group imports torch when called.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from circlefit.config import PARAMS_FILE, DistributedConfig
from circlefit.errors import DeviceError, DistributedError
from circlefit.train.launch import under_torchrun

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "SINGLE",
    "Dist",
    "OutOfSync",
    "from_env",
    "joined",
    "shard",
    "shard_bounds",
    "shard_size",
    "threads_per_rank",
]

log = logging.getLogger(__name__)


class OutOfSync(DistributedError):
    """Ranks ended with different weights: a step was not taken identically everywhere."""


@dataclass(frozen=True)
class Dist:
    """This process's place among the ranks; `SINGLE` (one process, no collectives) by default."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""

    @property
    def ddp(self) -> bool:
        """True when there are other ranks to average with."""
        return self.world_size > 1

    def describe(self) -> dict[str, Any]:
        """Summary keys for a run under torchrun (none for a plain process)."""
        return {"world_size": self.world_size, "backend": self.backend} if self.backend else {}

    def wrap(self, net: nn.Module) -> nn.Module:
        """The module training steps run through: DDP over `net` when there are other ranks."""
        if not self.ddp:
            return net
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over all ranks (a detached copy); `t` itself in a single process."""
        if not self.ddp:
            return t
        import torch.distributed as tdist

        out = t.detach().clone()
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        return out

    def reduce_np(self, a: np.ndarray, op: str) -> np.ndarray:
        """`op` ("sum" or "max") of a numpy array over all ranks; `a` itself in one process.

        A circlefit.numeric.exact.Reduce."""
        if not self.ddp:
            return a
        import torch
        import torch.distributed as tdist

        dev = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        t = torch.from_numpy(np.ascontiguousarray(a)).to(dev, copy=True)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX)
        return t.cpu().numpy()

    def backward(self, share: torch.Tensor) -> None:
        """Backward on this rank's share of the loss; DDP's mean over ranks then gives the full gradient."""
        (share * self.world_size if self.ddp else share).backward()

    def barrier(self) -> None:
        if self.backend:
            import torch.distributed as tdist

            tdist.barrier()

    # Mini-batches: train.batch_size is the global batch, split over the ranks.
    def local_batch(self, batch_size: int) -> int:
        return math.ceil(batch_size / self.world_size)

    def steps_per_epoch(self, rows: int, batch_size: int) -> int:
        """The same on every rank: the largest shard in batches of `local_batch` rows."""
        return math.ceil(shard_size(rows, 0, self.world_size) / self.local_batch(batch_size))

    def step_rows(self, rows: int, batch_size: int, b: int) -> int:
        """Rows in mini-batch `b` of an epoch, on all ranks together (smaller shards end sooner)."""
        per = self.local_batch(batch_size)
        return sum(min(max(shard_size(rows, r, self.world_size) - b * per, 0), per) for r in range(self.world_size))

    def check_in_sync(self, net: nn.Module) -> None:
        """Raise unless every rank holds bitwise rank 0's weights (one broadcast, at the end)."""
        if not self.ddp:
            return
        import torch
        import torch.distributed as tdist

        mine = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        theirs = mine.clone()
        tdist.broadcast(theirs, src=0)
        differs = torch.tensor([float(not torch.equal(mine, theirs))], device=mine.device)
        tdist.all_reduce(differs, op=tdist.ReduceOp.MAX)
        if differs.item():
            raise OutOfSync("ranks ended training with different weights; no model was written")


SINGLE = Dist()


def shard_bounds(rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of `rank`'s block of `rows`; the first `rows % world_size` blocks hold one more row."""
    size, extra = divmod(rows, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


def shard_size(rows: int, rank: int, world_size: int) -> int:
    start, stop = shard_bounds(rows, rank, world_size)
    return stop - start


def shard(rows: np.ndarray, dist: Dist) -> np.ndarray:
    """This rank's contiguous block of rows (of a memory map: only that block is read into memory)."""
    start, stop = shard_bounds(len(rows), dist.rank, dist.world_size)
    return np.require(np.asarray(rows[start:stop]), requirements=["C", "W"])  # copies a read-only map's block


def from_env(cfg: DistributedConfig, source: str = PARAMS_FILE) -> Dist | None:
    """This process's place from torchrun's environment; None when torchrun did not start it."""
    if not under_torchrun():
        return None
    env = {k: int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    if not cfg.enabled:
        raise DistributedError(
            f"{source}: train.distributed.enabled is false, but torchrun started this stage "
            f"(world size {env['WORLD_SIZE']}); set it to true so that params.yaml says what ran"
        )
    if env["LOCAL_WORLD_SIZE"] != cfg.nproc_per_node:
        raise DistributedError(
            f"{source}: train.distributed.nproc_per_node is {cfg.nproc_per_node}, but torchrun started "
            f"{env['LOCAL_WORLD_SIZE']} ranks on this node; make them agree"
        )
    return Dist(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"])


def threads_per_rank(threads: int, ranks_here: int) -> int:
    """train.threads is the machine's budget: each of its `ranks_here` ranks gets an equal part (at least 1)."""
    return max(1, threads // ranks_here)


@contextlib.contextmanager
def joined(cfg: DistributedConfig, device: str, source: str = PARAMS_FILE) -> Iterator[tuple[Dist, str]]:
    """Under torchrun, this rank's place and device inside the process group; else (SINGLE, device).

    On CUDA, local rank i uses the i-th visible GPU. Ranks other than 0 log warnings and
    errors only: rank 0 alone reports progress. The group is left on exit.
    """
    dist = from_env(cfg, source)
    if dist is None:
        yield SINGLE, device
        return
    import torch
    import torch.distributed as tdist

    cuda = device.startswith("cuda")
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise DeviceError(f"{source}: train.distributed.backend is nccl, which needs CUDA; the device is {device}")
    if cuda:
        if dist.local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"{source}: train.distributed.nproc_per_node is {dist.local_world_size}, but this node "
                f"sees {torch.cuda.device_count()} CUDA device(s); lower it or set CUDA_VISIBLE_DEVICES"
            )
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    if dist.rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    tdist.init_process_group(backend, device_id=torch.device(device) if cuda else None)
    log.info("rank %d of %d joined (%s, %s)", dist.rank, dist.world_size, backend, device)
    try:
        yield Dist(dist.rank, dist.world_size, dist.local_rank, dist.local_world_size, backend), device
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
