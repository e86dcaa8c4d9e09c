"""Normalization stats against numpy (float64), constant columns, and the JSON round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circlefit.config import DataConfig, from_mapping
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import BUFFERS, EPS_POLICY, Stats, fit_stats, stats_from_json
from circlefit.io import DataError, read_json, write_json

from conftest import REPO, merge, repo_params


def rows(n: int, seed: int = 0, offset: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(n, 3)) * np.array([3.0, 5.0, 40.0]) * scale + np.array([0.5, -2.0, 150.0]) + offset
    return out.astype(np.float32)


def numpy_stats(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a64 = arr.astype(np.float64)
    return np.mean(a64, axis=0), np.std(a64, axis=0)


@pytest.mark.parametrize("n", [2, 3, 1000, (1 << 20) + 321])  # the last crosses the 2^20-row chunk
def test_fit_stats_matches_numpy(n: int) -> None:
    arr = rows(n, seed=n)
    stats = fit_stats(arr, 1e-6)
    mean, std = numpy_stats(arr)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-12)
    assert stats.count == n and stats.min_std == 1e-6
    assert all(type(v) is float for v in (*stats.mean, *stats.std))


def test_fit_stats_is_stable_with_a_large_offset() -> None:
    # Mean 1e4, std 0.1: a one-pass E[x²] - E[x]² in float64 loses ~8 of 16 digits here.
    arr = rows(50_000, offset=1e4, scale=0.01)
    stats = fit_stats(arr, 1e-6)
    mean, std = numpy_stats(arr)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(stats.std, std, rtol=1e-9)


def test_fit_stats_on_a_memory_map(tmp_path: Path) -> None:
    arr = rows(5000)
    np.save(tmp_path / "a.npy", arr)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert fit_stats(mapped, 1e-6) == fit_stats(arr, 1e-6)


def test_buffers_are_the_stats_as_a_model_stores_them() -> None:
    stats = fit_stats(rows(100), 1e-6)
    buffers = stats.buffers()
    assert tuple(buffers) == BUFFERS and all(b.dtype == np.float32 for b in buffers.values())
    np.testing.assert_array_equal(buffers["xy_mean"], np.float32(stats.mean[:2]))
    np.testing.assert_array_equal(buffers["xy_std"], np.float32(stats.std[:2]))
    np.testing.assert_array_equal(buffers["label_mean"], np.float32([stats.label_mean]))
    np.testing.assert_array_equal(buffers["label_std"], np.float32([stats.label_std]))


@pytest.mark.parametrize(("col", "name"), [(0, "x"), (1, "y"), (2, "label")])
def test_constant_column_is_an_error_naming_the_file(col: int, name: str) -> None:
    arr = rows(100)
    arr[:, col] = 7.0
    with pytest.raises(DataError) as info:
        fit_stats(arr, 1e-6, "data/generated/train.npy")
    msg = str(info.value)
    assert msg.startswith("data/generated/train.npy: ") and f" {name} has std 0 " in msg, msg
    assert "constant column" in msg and "normalize.min_std" in msg


def test_std_at_the_floor_is_an_error_above_it_is_not() -> None:
    arr = np.zeros((4, 3), dtype=np.float32)
    arr[:, 0] = [-1, 1, -1, 1]  # std 1
    arr[:, 1] = [-2, 2, -2, 2]  # std 2
    arr[:, 2] = [-3, 3, -3, 3]  # std 3
    assert fit_stats(arr, 0.999).std == (1.0, 2.0, 3.0)
    with pytest.raises(DataError, match=r" x has std 1 <= 1 "):
        fit_stats(arr, 1.0)


def test_floor_scales_with_the_column_mean() -> None:
    # A label of 196 that only wobbles by float32 rounding (std ~1e-5) is constant, not signal.
    arr = rows(1000)
    arr[:, 2] = np.float32(196.0) + np.float32(1.5e-5) * np.sign(np.arange(1000) % 2 - 0.5).astype(np.float32)
    assert 1e-6 < arr[:, 2].astype(np.float64).std() < 196e-6
    with pytest.raises(DataError, match=r" label has std .* <= 0.000196 "):
        fit_stats(arr, 1e-6)


def test_circle_without_noise_is_refused_with_noise_is_fitted() -> None:
    base = merge(repo_params()["data"], {"source": "circle", "n": 2000})
    tutorial = load_tutorial(REPO / "data" / "tutorial36.csv")
    clean = generate(from_mapping(DataConfig, base, "t", "data"), tutorial)
    with pytest.raises(DataError, match="label has std") as info:
        fit_stats(clean.train, 1e-6, "train.npy")
    assert "data.noise" in str(info.value)  # says how to fix it
    noisy = generate(from_mapping(DataConfig, merge(base, {"noise": {"xy": 0.1}}), "t", "data"), tutorial)
    assert fit_stats(noisy.train, 1e-6).std[2] > 1.0


def test_too_few_rows() -> None:
    with pytest.raises(DataError, match=r"^tr.npy: need at least 2 rows"):
        fit_stats(rows(1), 1e-6, "tr.npy")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_rows() -> None:
    arr = rows(10)
    arr[3, 1] = np.inf
    with pytest.raises(DataError, match=r"^tr.npy: y has non-finite mean/std"):
        fit_stats(arr, 1e-6, "tr.npy")


# --- JSON ------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    stats = fit_stats(rows(1000), 1e-6)
    path = tmp_path / "stats.json"
    write_json(path, stats.to_json())
    back = stats_from_json(read_json(path), path)
    assert back == stats  # floats survive JSON exactly (repr round-trips)
    doc = json.loads(path.read_text())
    assert doc["columns"] == ["x", "y", "label"] and doc["eps_policy"] == EPS_POLICY
    assert path.read_text().endswith("\n")
    write_json(tmp_path / "again.json", back.to_json())
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


GOOD: dict[str, Any] = {"mean": [0.0, 0.0, 100.0], "std": [10.0, 10.0, 50.0], "count": 10, "min_std": 1e-6}


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({k: v for k, v in GOOD.items() if k != "std"}, "not a normalization stats file"),
        ({**GOOD, "mean": [0.0, 0.0]}, "3 entries"),
        ({**GOOD, "std": [1.0, 1.0, 1.0, 1.0]}, "3 entries"),
        ({**GOOD, "std": [1.0, 0.0, 1.0]}, "y has unusable mean/std"),
        ({**GOOD, "std": [1.0, 1.0, -2.0]}, "label has unusable mean/std"),
        ({**GOOD, "mean": [math.nan, 0.0, 1.0]}, "x has unusable mean/std"),
        ({**GOOD, "std": [1.0, math.inf, 1.0]}, "y has unusable"),
        ({**GOOD, "mean": ["a", 0.0, 1.0]}, "not a normalization stats file"),
        ({**GOOD, "mean": 3.0}, "not a normalization stats file"),
        ({**GOOD, "count": None}, "not a normalization stats file"),
        ([1, 2, 3], "not a normalization stats file"),
        (None, "not a normalization stats file"),
    ],
    ids=[
        "no std",
        "short mean",
        "long std",
        "zero std",
        "negative std",
        "nan mean",
        "inf std",
        "string",
        "scalar",
        "null count",
        "list",
        "null",
    ],
)
def test_stats_from_json_rejects(doc: Any, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        stats_from_json(doc, "data/stats.json")
    assert str(info.value).startswith("data/stats.json: ") and fragment in str(info.value), str(info.value)


def test_stats_from_json_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text('{"mean": [0, 0,')
    with pytest.raises(DataError, match="not valid JSON") as info:
        stats_from_json(read_json(path), path)
    assert str(path) in str(info.value)
    path.write_text('{"mean": [NaN, 0, 1], "std": [1, 1, 1], "count": 3, "min_std": 1e-6}')  # json.loads takes NaN
    with pytest.raises(DataError, match="NaN is not a number JSON allows") as info:  # read_json does not
        read_json(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="x has unusable"):  # nor stats_from_json, however the NaN got there
        stats_from_json(json.loads(path.read_text()), path)
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "missing.json")


def test_stats_from_json_accepts_good() -> None:
    assert stats_from_json(GOOD) == Stats((0.0, 0.0, 100.0), (10.0, 10.0, 50.0), 10, 1e-6)
