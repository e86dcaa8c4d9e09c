"""What training takes and gives, whatever the method: the rows in, the weights, curve and summary out (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circlefit.data.store import load_split
from circlefit.numeric.mlp64 import Weights
from circlefit.train.distributed import SINGLE, Dist, shard

__all__ = ["CurveRow", "Rows", "TrainResult", "summary"]

CurveRow = dict[str, Any]  # one loss-curve row: step, phase, train_loss, val_loss and the method's own columns


@dataclass(frozen=True)
class Rows:
    """This process's rows, float32 [N, 3] (x, y, label): the train and val splits (under torchrun, its shard)."""

    train: np.ndarray
    val: np.ndarray

    @classmethod
    def load(cls, data: str | Path, dist: Dist = SINGLE) -> Rows:
        """This rank's shard of the generated train and val splits (all of them in one process)."""
        return cls(*(shard(load_split(data, name, mmap=True), dist) for name in ("train", "val")))


@dataclass(frozen=True)
class TrainResult:
    weights: Weights  # the stored float32 model
    curve: list[CurveRow]  # data/train/loss.tsv
    summary: dict[str, Any]  # data/train/summary.json: deterministic facts about the run (no wall time)
    timing: dict[str, float]  # data/train/timing.json: wall time, not a DVC output


def summary(
    method: str,
    device: str,
    curve: Sequence[CurveRow],
    *,
    best_step: int,
    best_val_loss: float,
    final: tuple[float, float],
    train_rows: int,
    weights: Weights,
    dist: Dist,
    **extra: Any,
) -> dict[str, Any]:
    """The summary every method writes, plus its own `extra` facts (versions, threads, layout, …)."""
    return {
        "method": method,
        "device": device,
        "steps": len(curve),
        "best_step": best_step,
        "best_val_loss": best_val_loss,
        "final_train_loss": final[0],
        "final_val_loss": final[1],
        "train_rows": train_rows,
        "parameters": sum(w.size + b.size for w, b in weights.layers),
        **extra,
        **dist.describe(),
    }
