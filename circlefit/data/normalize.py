"""Z-score statistics of x, y and the label, fitted on the train split only (numpy only)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circlefit.errors import DataError
from circlefit.io import read_json

__all__ = ["BUFFERS", "EPS_POLICY", "Stats", "fit_stats", "read_stats", "stats_from_json"]

EPS_POLICY = "no epsilon is added: a std <= normalize.min_std * max(1, |mean|) is an error at fit time"
_COLUMNS = ("x", "y", "label")
BUFFERS = ("xy_mean", "xy_std", "label_mean", "label_std")  # how a model stores the normalizer (float32)


@dataclass(frozen=True)
class Stats:
    """Means and (population) stds of x, y, label; z = (v - mean) / std."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    count: int
    min_std: float

    @property
    def label_mean(self) -> float:
        return self.mean[2]

    @property
    def label_std(self) -> float:
        return self.std[2]

    def buffers(self) -> dict[str, np.ndarray]:
        """The normalizer as a model stores it: float32 arrays named by BUFFERS, inputs [2], label [1]."""
        f32 = np.float32
        return {
            "xy_mean": np.asarray(self.mean[:2], f32),
            "xy_std": np.asarray(self.std[:2], f32),
            "label_mean": np.asarray(self.mean[2:], f32),
            "label_std": np.asarray(self.std[2:], f32),
        }

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = list(_COLUMNS)
        d["eps_policy"] = EPS_POLICY
        return d


def fit_stats(train: np.ndarray, min_std: float, source: str = "train split") -> Stats:
    """Fit stats on a [N, 3] array in float64, in chunks (memory stays flat at any N)."""
    n = int(train.shape[0])
    if n < 2:
        raise DataError(f"{source}: need at least 2 rows to fit normalization stats, got {n}")
    total = np.zeros(3)
    for start in range(0, n, 1 << 20):
        total += np.asarray(train[start : start + (1 << 20)], dtype=np.float64).sum(axis=0)
    mean = total / n
    sq = np.zeros(3)
    for start in range(0, n, 1 << 20):  # two-pass: numerically stable at 10M rows
        sq += ((np.asarray(train[start : start + (1 << 20)], dtype=np.float64) - mean) ** 2).sum(axis=0)
    std = np.sqrt(sq / n)
    for name, m, s in zip(_COLUMNS, mean, std, strict=True):
        if not (math.isfinite(m) and math.isfinite(s)):
            raise DataError(f"{source}: {name} has non-finite mean/std ({m}, {s})")
        # Relative to the column's scale: float32 rounding alone gives a constant label of 196
        # (data.source: circle) a std of ~1e-5, which must not pass for signal.
        floor = min_std * max(1.0, abs(m))
        if s <= floor:
            raise DataError(
                f"{source}: {name} has std {s:g} <= {floor:g} (normalize.min_std {min_std:g} × max(1, |mean|)); "
                f"a constant column cannot be standardized (for data.source: circle, add data.noise)"
            )
    return Stats(tuple(map(float, mean)), tuple(map(float, std)), n, float(min_std))  # type: ignore[arg-type]


def stats_from_json(obj: Any, source: str | Path = "stats") -> Stats:
    """Rebuild Stats from its JSON form, validating what a consumer relies on."""
    try:
        mean = tuple(float(v) for v in obj["mean"])
        std = tuple(float(v) for v in obj["std"])
        stats = Stats(mean, std, int(obj["count"]), float(obj["min_std"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{source}: not a normalization stats file ({type(e).__name__}: {e})") from None
    if len(mean) != 3 or len(std) != 3:
        raise DataError(f"{source}: mean and std must have 3 entries (x, y, label)")
    for name, m, s in zip(_COLUMNS, mean, std, strict=True):
        if not (math.isfinite(m) and math.isfinite(s)) or s <= 0:
            raise DataError(f"{source}: {name} has unusable mean/std ({m}, {s}); std must be finite and > 0")
    return stats


def read_stats(path: str | Path) -> Stats:
    """The stats file the normalize stage wrote, checked."""
    return stats_from_json(read_json(path), path)
