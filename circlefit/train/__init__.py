"""Training: one entry, `train`, that runs the method `train.method` names on the device the edge resolved.

- `lstsq` (circlefit.train.lstsq): hinges placed from the data, output layer by exact least squares;
  float64, the same bytes on every CPU and on the GPU.
- `gradient` (circlefit.train.gradient): PyTorch's init, a first-order optimizer, then L-BFGS.

Both return a `TrainResult` (weights, loss curve, summary, timing). Under torchrun each rank passes
its shard and its `Dist` (circlefit.train.distributed); rank 0 writes. Importing this package
imports no torch: only the methods that need it do.
"""

from __future__ import annotations

from collections.abc import Callable

from circlefit.config import PARAMS_FILE, ModelConfig, TrainConfig
from circlefit.data.normalize import Stats
from circlefit.train.distributed import SINGLE, Dist, threads_per_rank
from circlefit.train.result import CurveRow, Rows, TrainResult

__all__ = ["Rows", "TrainResult", "train"]


def train(
    cfg: TrainConfig,
    model: ModelConfig,
    stats: Stats,
    rows: Rows,
    device: str = "cpu",
    *,
    dist: Dist = SINGLE,
    on_eval: Callable[[CurveRow], None] | None = None,
    source: str = PARAMS_FILE,
) -> TrainResult:
    """Train a fresh model on `rows` as `cfg.method` says, on `device` (resolved: "cpu", "cuda", "cuda:N").

    `on_eval` sees each loss-curve row (the gradient method as it is recorded, lstsq once the winner
    is fitted); `source` is the params file for errors. train.threads is the machine's budget: under
    torchrun each rank on it takes an equal part.
    """
    threads = threads_per_rank(cfg.threads, dist.local_world_size)
    if cfg.method == "lstsq":
        from circlefit.train import lstsq

        return lstsq.train(cfg, model, stats, rows, device, dist, on_eval, source, threads=threads)
    import torch

    from circlefit.device import configure
    from circlefit.train import gradient

    configure(device, threads, cfg.gradient.precision)
    return gradient.train(cfg, model, stats, rows, torch.device(device), dist, on_eval, source)
