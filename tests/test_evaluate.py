"""Metrics against hand-computed values, and the completeness of the metrics document."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from circlefit.config import EvaluateConfig, ModelConfig
from circlefit.data.normalize import Stats
from circlefit.data.store import Manifest
from circlefit.evaluate import band_errors, evaluate, plot_data, plot_rows, regression_metrics
from circlefit.model.network import CircleModel, build_model
from circlefit.numeric.mlp64 import Weights, predict

REGRESSION_KEYS = {"rmse", "mae", "max_abs_err", "r2", "rel_rmse_r_ge_1", "n"}


def assert_metrics_complete(metrics: dict[str, Any], bands: int) -> None:
    """Every metric the evaluate stage promises is present and finite (used by stage tests too)."""
    assert set(metrics) == {"test", "ood", "tutorial", "baseline_constant_mean", "test_by_radius"}
    assert set(metrics["test"]) >= REGRESSION_KEYS | {"rmse_ratio_vs_constant"}
    for split in ("ood", "tutorial"):
        assert set(metrics[split]) == REGRESSION_KEYS, split
    assert set(metrics["baseline_constant_mean"]) == {"test_rmse"}
    assert len(metrics["test_by_radius"]) == bands
    for band in metrics["test_by_radius"].values():
        assert set(band) == {"n", "rmse", "max_abs_err"}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif not isinstance(node, bool):
            assert isinstance(node, (int, float)) and math.isfinite(node), (path, node)

    walk(metrics, "metrics")
    for split in ("test", "ood", "tutorial"):
        m = metrics[split]
        assert 0 <= m["mae"] <= m["rmse"] <= m["max_abs_err"], split
        assert m["n"] > 0


def rows_of(xy: list[tuple[float, float]], labels: list[float] | None = None) -> np.ndarray:
    arr = np.array(xy, dtype=np.float32)
    lab = arr[:, 0].astype(np.float64) ** 2 + arr[:, 1] ** 2 if labels is None else np.array(labels)
    return np.concatenate([arr, np.asarray(lab, dtype=np.float32)[:, None]], axis=1)


# --- regression_metrics: a hand-computed oracle -----------------------------------------------


def test_regression_metrics_by_hand() -> None:
    rows = rows_of([(3, 4), (0, 0.5), (1, 0), (0, 2)])  # labels 25, 0.25, 1, 4
    pred = np.array([26, 0.25, 0.5, 4], dtype=np.float32)  # errors 1, 0, -0.5, 0
    m = regression_metrics(pred, rows)
    assert m["n"] == 4
    assert m["rmse"] == pytest.approx(math.sqrt(1.25 / 4), rel=1e-12)
    assert m["mae"] == pytest.approx(1.5 / 4, rel=1e-12)
    assert m["max_abs_err"] == 1.0
    # mean label 7.5625; SS_tot = 17.4375² + 7.3125² + 6.5625² + 3.5625² = 413.296875; SS_res = 1.25
    assert m["r2"] == pytest.approx(1 - 1.25 / 413.296875, rel=1e-12)
    # relative errors where r >= 1 (rows 0, 2, 3): 1/25, -0.5/1, 0/4
    assert m["rel_rmse_r_ge_1"] == pytest.approx(math.sqrt((0.04**2 + 0.5**2 + 0) / 3), rel=1e-12)
    assert all(type(v) in (int, float) for v in m.values())


def test_regression_metrics_perfect_and_edge_cases() -> None:
    rows = rows_of([(3, 4), (1, 1)])
    perfect = regression_metrics(rows[:, 2].copy(), rows)
    assert perfect["rmse"] == perfect["mae"] == perfect["max_abs_err"] == perfect["rel_rmse_r_ge_1"] == 0.0
    assert perfect["r2"] == 1.0
    near = rows_of([(0.1, 0.2), (0.3, 0.1)])  # no point with r >= 1: relative error undefined -> 0
    assert regression_metrics(near[:, 2] + 1, near)["rel_rmse_r_ge_1"] == 0.0
    same = rows_of([(3, 4), (4, 3)])  # constant labels: SS_tot = 0 -> r2 reported as 0
    assert regression_metrics(same[:, 2] + 1, same)["r2"] == 0.0


# --- bands -----------------------------------------------------------------------------------


def test_band_errors_by_hand() -> None:
    rows = rows_of([(1, 0), (0, 3), (3, 0), (0, 4), (5, 0)])  # r = 1, 3, 3, 4 (edge), 5 (outside)
    pred = rows[:, 2] + np.array([1, 2, -1, -1, 100], dtype=np.float32)
    out = band_errors(pred, rows, r_max=4.0, bands=2)
    assert list(out) == ["r0-2", "r2-4"]
    assert out["r0-2"] == {"n": 1, "rmse": 1.0, "max_abs_err": 1.0}
    assert out["r2-4"]["n"] == 3  # r = 4 belongs to the last band; r = 5 to none
    assert out["r2-4"]["rmse"] == pytest.approx(math.sqrt((4 + 1 + 1) / 3))
    assert out["r2-4"]["max_abs_err"] == 2.0


def test_band_edges_and_empty_bands() -> None:
    rows = rows_of([(2, 0), (0, 2.5)])  # r = 2 sits on an inner edge: it belongs to the upper band
    out = band_errors(rows[:, 2] + 1, rows, r_max=4.0, bands=4)
    assert list(out) == ["r0-1", "r1-2", "r2-3", "r3-4"]
    assert [b["n"] for b in out.values()] == [0, 0, 2, 0]
    assert out["r0-1"] == {"n": 0, "rmse": 0.0, "max_abs_err": 0.0}


# --- predict / evaluate / plot rows --------------------------------------------------------

STATS = Stats(mean=(0.0, 0.0, 133.0), std=(11.5, 11.5, 66.0), count=10, min_std=1e-6)


@pytest.fixture(scope="module")
def model() -> CircleModel:
    return build_model(ModelConfig(hidden=(16,), activation="relu"), STATS, torch.Generator().manual_seed(0)).eval()


def weights_of(model: CircleModel) -> Weights:
    return Weights.of(model)


def test_predict_batches_agree(model: CircleModel) -> None:
    xy = np.random.default_rng(1).uniform(-20, 20, size=(1000, 2)).astype(np.float32)
    whole = predict(weights_of(model), xy)
    assert whole.shape == (1000,) and whole.dtype == np.float64
    # Bit for bit: each row's sums are exact before one rounding (circlefit.numeric.exact), whatever the block.
    np.testing.assert_array_equal(predict(weights_of(model), xy, block_rows=7), whole)
    # PyTorch's float32 forward is the same function up to float32 rounding, which the parity
    # tolerance bounds (circlefit.export.parity.Tolerance: rtol 1e-5 of |y| + |label_mean| + label_std).
    with torch.no_grad():
        got = model(torch.from_numpy(xy))[:, 0].numpy().astype(np.float64)
    bound = 1e-5 * (np.abs(whole) + abs(STATS.mean[2]) + STATS.std[2])
    assert np.all(np.abs(got - whole) <= bound)


def test_evaluate_is_complete_and_consistent(model: CircleModel) -> None:
    rng = np.random.default_rng(2)
    splits = {
        name: rows_of([tuple(p) for p in rng.uniform(-lim, lim, size=(n, 2))])
        for name, n, lim in (("test", 300, 14.0), ("ood", 100, 16.0), ("tutorial", 36, 10.0))
    }
    weights = weights_of(model)
    cfg = EvaluateConfig(bands=5, plot_points=40, batch_size=64)
    metrics, preds = evaluate(weights, splits, 133.0, Manifest(train_radius=20.0, held_out=True), cfg)
    assert_metrics_complete(metrics, bands=5)
    for name, rows in splits.items():
        np.testing.assert_array_equal(preds[name], predict(weights, rows[:, :2]))
        assert metrics[name].items() >= regression_metrics(preds[name], rows).items()
    const = np.full(300, 133.0, dtype=np.float32)
    baseline = regression_metrics(const, splits["test"])["rmse"]
    assert metrics["baseline_constant_mean"]["test_rmse"] == baseline
    assert metrics["test"]["rmse_ratio_vs_constant"] == pytest.approx(metrics["test"]["rmse"] / baseline)
    assert sum(b["n"] for b in metrics["test_by_radius"].values()) == 300  # all test radii < r_max
    assert metrics["test"]["held_out"] is True
    test_rows, radius_rows = plot_data(splits, preds, cfg.plot_points)
    assert test_rows == plot_rows(splits["test"], preds["test"], 40)
    assert [r["split"] for r in radius_rows] == ["test"] * 40 + ["ood"] * 10


def test_plot_rows() -> None:
    rows = rows_of([(float(i), 0.0) for i in range(10)])
    pred = rows[:, 2] + 0.5
    out = plot_rows(rows, pred, limit=4)
    assert [r["radius"] for r in out] == [0.0, 3.0, 6.0, 9.0]  # evenly spaced, first and last kept
    assert out[1] == {"radius": 3.0, "actual": 9.0, "predicted": 9.5, "abs_error": 0.5}
    assert len(plot_rows(rows, pred, limit=1000)) == 10
    assert len(plot_rows(rows, pred, limit=1)) == 1
