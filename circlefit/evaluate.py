"""Metrics and plot data for a trained model against the oracle x² + y² (numpy only, no torch).

Predictions come from circlefit.numeric.mlp64: the stored float32 weights evaluated in float64
with CPU-independent arithmetic, so every metric and plot value is the same on any x86-64 CPU.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from circlefit.config import EvaluateConfig
from circlefit.data.store import Manifest
from circlefit.numeric import mlp64
from circlefit.numeric.exact import fsum_rows
from circlefit.numeric.mlp64 import Weights

__all__ = ["band_errors", "evaluate", "plot_data", "plot_rows", "regression_metrics"]


def _mean(values: np.ndarray) -> float:
    """A correctly rounded mean (math.fsum): independent of summation order, SIMD width and CPU."""
    return fsum_rows(values) / len(values)


def regression_metrics(pred: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, max abs error, R² and relative RMSE (points with r ≥ 1) in float64."""
    y = rows[:, 2].astype(np.float64)
    err = pred.astype(np.float64) - y
    ss_tot = fsum_rows((y - _mean(y)) ** 2)
    r2 = 1.0 - fsum_rows(err**2) / ss_tot if ss_tot > 0 else 0.0
    radius2 = rows[:, 0].astype(np.float64) ** 2 + rows[:, 1].astype(np.float64) ** 2
    far = radius2 >= 1.0
    rel = math.sqrt(_mean((err[far] / y[far]) ** 2)) if far.any() else 0.0
    return {
        "rmse": math.sqrt(_mean(err**2)),
        "mae": _mean(np.abs(err)),
        "max_abs_err": float(np.max(np.abs(err))),
        "r2": r2,
        "rel_rmse_r_ge_1": rel,
        "n": int(rows.shape[0]),
    }


def band_errors(pred: np.ndarray, rows: np.ndarray, r_max: float, bands: int) -> dict[str, dict[str, float]]:
    """RMSE and max abs error in `bands` equal-width radius bands over [0, r_max], keyed "r{lo}-{hi}"."""
    r = np.sqrt(rows[:, 0].astype(np.float64) ** 2 + rows[:, 1].astype(np.float64) ** 2)
    err = pred.astype(np.float64) - rows[:, 2]
    edges = np.linspace(0.0, r_max, bands + 1)
    out = {}
    for lo, hi in itertools.pairwise(edges):
        m = (r >= lo) & ((r < hi) if hi < r_max else (r <= hi + 1e-9))
        e = err[m]
        out[f"r{lo:g}-{hi:g}"] = {
            "n": int(m.sum()),
            "rmse": math.sqrt(_mean(e**2)) if m.any() else 0.0,
            "max_abs_err": float(np.abs(e).max()) if m.any() else 0.0,
        }
    return out


def evaluate(
    model: Weights, splits: dict[str, np.ndarray], label_mean: float, data: Manifest, cfg: EvaluateConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics per split (test, ood, tutorial) + the constant-mean baseline (`label_mean` of train); and predictions."""
    preds = {name: mlp64.predict(model, rows[:, :2], cfg.batch_size) for name, rows in splits.items()}
    metrics: dict[str, Any] = {name: regression_metrics(preds[name], rows) for name, rows in splits.items()}
    test = splits["test"]
    metrics["test"]["held_out"] = data.held_out
    const = np.full(test.shape[0], label_mean, dtype=np.float32)
    metrics["baseline_constant_mean"] = {"test_rmse": regression_metrics(const, test)["rmse"]}
    metrics["test"]["rmse_ratio_vs_constant"] = metrics["test"]["rmse"] / max(
        metrics["baseline_constant_mean"]["test_rmse"], 1e-30
    )
    metrics["test_by_radius"] = band_errors(preds["test"], test, data.train_radius, cfg.bands)
    return metrics, preds


def plot_data(
    splits: dict[str, np.ndarray], preds: dict[str, np.ndarray], points: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the predicted-vs-true plot (test) and of the error-by-radius plot (test, then a quarter as many ood)."""
    test = plot_rows(splits["test"], preds["test"], points)
    ood = plot_rows(splits["ood"], preds["ood"], points // 4 or 1)
    return test, [dict(r, split="test") for r in test] + [dict(r, split="ood") for r in ood]


def plot_rows(rows: np.ndarray, pred: np.ndarray, limit: int) -> list[dict[str, float]]:
    """Up to `limit` evenly spaced rows of (radius, actual, predicted, abs error) for plots."""
    idx = np.linspace(0, rows.shape[0] - 1, num=min(limit, rows.shape[0])).round().astype(np.int64)
    r = np.sqrt(rows[idx, 0].astype(np.float64) ** 2 + rows[idx, 1].astype(np.float64) ** 2)
    return [
        {
            "radius": round(float(ri), 5),
            "actual": round(float(t), 5),
            "predicted": round(float(p), 5),
            "abs_error": round(abs(float(p) - float(t)), 6),
        }
        for ri, t, p in zip(r, rows[idx, 2], pred[idx], strict=True)
    ]
