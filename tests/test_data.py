"""Generators against their distributions: radii, angles, labels, noise, splits, seeds."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circlefit.config import DataConfig, from_mapping
from circlefit.data.generate import SPLITS, Dataset, generate, labels_of, load_tutorial, summarize
from circlefit.io import DataError

from conftest import REPO, merge, repo_params

TUTORIAL = REPO / "data" / "tutorial36.csv"
N = 20_000  # big enough for 5-sigma checks at ~1% resolution, generated in milliseconds


def data_cfg(**over: Any) -> DataConfig:
    """The repo's data params with overrides, validated like params.yaml."""
    return from_mapping(DataConfig, merge(repo_params()["data"], over), "test", "data")


@pytest.fixture(scope="module")
def tutorial_xy() -> np.ndarray:
    return load_tutorial(TUTORIAL)


def make(tutorial_xy: np.ndarray, **over: Any) -> Dataset:
    return generate(data_cfg(**{"n": N, **over}), tutorial_xy)


def all_rows(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.train, ds.val, ds.test])


def radii(rows: np.ndarray) -> np.ndarray:
    return np.hypot(rows[:, 0].astype(np.float64), rows[:, 1].astype(np.float64))


def assert_fraction(hits: np.ndarray, p: float, sigmas: float = 5.0) -> None:
    """The fraction of True in `hits` is p within `sigmas` binomial standard deviations."""
    n = hits.size
    tol = sigmas * math.sqrt(p * (1 - p) / n)
    assert abs(hits.mean() - p) <= tol, f"fraction {hits.mean():.4f} vs {p} ± {tol:.4f} (n={n})"


def assert_std(sample: np.ndarray, sigma: float, sigmas: float = 5.0) -> None:
    """Sample std equals sigma within `sigmas` standard errors of a normal sample's std."""
    tol = sigmas * sigma / math.sqrt(2 * sample.size)
    assert abs(sample.std() - sigma) <= tol, f"std {sample.std():.5f} vs {sigma} ± {tol:.5f}"


# --- radii and angles ------------------------------------------------------------------------


def test_disk_is_uniform_over_area(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="disk", r_max=20.0)
    r = radii(all_rows(ds))
    assert r.max() <= 20.0 * (1 + 1e-6)
    assert_fraction(r < 10.0, 0.25)  # P(r < R/2) = 1/4 for a uniform disk
    for k in (1, 3, 5, 7, 9):  # the whole CDF, (s/R)²
        assert_fraction(r < 20.0 * math.sqrt(k / 10), k / 10)
    assert ds.train_radius == 20.0


def test_angles_are_uniform(tutorial_xy: np.ndarray) -> None:
    rows = all_rows(make(tutorial_xy, source="disk"))
    theta = np.arctan2(rows[:, 1], rows[:, 0])
    for k in range(8):  # each quarter turn, starting at every multiple of 45°, holds 1/4
        assert_fraction((theta - k * math.pi / 4) % (2 * math.pi) < math.pi / 2, 0.25)
    assert abs(rows[:, 0].mean()) < 5 * 20 / math.sqrt(N)


def test_annulus_radii(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="annulus", r_min=5.0, r_max=10.0)
    r = radii(all_rows(ds))
    assert r.min() >= 5.0 * (1 - 1e-6) and r.max() <= 10.0 * (1 + 1e-6)
    assert_fraction(r < math.sqrt((5.0**2 + 10.0**2) / 2), 0.5)  # median radius of a uniform annulus
    assert_fraction(r < math.sqrt(5.0**2 + 0.25 * (10.0**2 - 5.0**2)), 0.25)
    assert ds.train_radius == 10.0


def test_circle_radii_exact_without_noise(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="circle", radius=14.0)
    np.testing.assert_allclose(radii(all_rows(ds)), 14.0, rtol=1e-6)
    assert ds.train_radius == 14.0


def test_tutorial_source_is_the_36_points(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="tutorial")
    csv = np.loadtxt(TUTORIAL, delimiter=",", skiprows=1).astype(np.float32)
    assert csv.shape == (36, 2)
    for name in SPLITS:
        rows = getattr(ds, name)
        np.testing.assert_array_equal(rows[:, :2], csv)
        np.testing.assert_array_equal(rows[:, 2], labels_of(csv))
    assert not ds.held_out
    assert ds.train_radius == pytest.approx(radii(csv).max(), rel=1e-6)
    assert ds.train is not ds.test  # copies: a consumer writing one cannot change another


def test_tutorial_points_ride_along_noise_free(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="disk", noise={"xy": 0.5, "label": 0.5})
    np.testing.assert_array_equal(ds.tutorial[:, :2], tutorial_xy)
    np.testing.assert_array_equal(ds.tutorial[:, 2], labels_of(tutorial_xy))
    assert ds.held_out


# --- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["disk", "annulus", "circle", "tutorial"])
def test_labels_are_x2_plus_y2_of_stored_coordinates(tutorial_xy: np.ndarray, source: str) -> None:
    ds = make(tutorial_xy, source=source, r_min=3.0, noise={"xy": 0.25, "label": 0.0})
    for name in (*SPLITS, "ood", "tutorial"):
        rows = getattr(ds, name)
        assert rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == 3
        exact = rows[:, 0].astype(np.float64) ** 2 + rows[:, 1].astype(np.float64) ** 2
        # one float32 rounding of the exact value, nothing else
        np.testing.assert_array_equal(rows[:, 2], exact.astype(np.float32), err_msg=name)
        assert np.all(np.abs(rows[:, 2] - exact) <= np.spacing(exact.astype(np.float32)) / 2 + 1e-30)


def test_labels_of_oracle() -> None:
    xy = np.array([[3, 4], [0, 0], [-1.5, 2], [1e3, -1e3]], dtype=np.float32)
    np.testing.assert_array_equal(labels_of(xy), np.array([25, 0, 6.25, 2e6], dtype=np.float32))
    assert labels_of(xy).dtype == np.float32


# --- noise -----------------------------------------------------------------------------------


def test_xy_noise_std(tutorial_xy: np.ndarray) -> None:
    # On a circle of radius R, noise of std s moves the radius by its radial part: N(0, s²)
    # (the tangential part adds ~s²/2R, 0.009 here: far below the tolerance).
    ds = make(tutorial_xy, source="circle", radius=14.0, noise={"xy": 0.5, "label": 0.0})
    dr = radii(all_rows(ds)) - 14.0
    assert_std(dr, 0.5)
    assert abs(dr.mean()) < 5 * 0.5 / math.sqrt(N) + 0.5**2 / (2 * 14.0)


def test_label_noise_std(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="disk", noise={"xy": 0.0, "label": 0.3})
    rows = all_rows(ds)
    resid = rows[:, 2].astype(np.float64) - labels_of(rows[:, :2]).astype(np.float64)
    assert_std(resid, 0.3)
    assert abs(resid.mean()) < 5 * 0.3 / math.sqrt(N)
    np.testing.assert_allclose(radii(rows).max(), 20.0, rtol=1e-3)  # coordinates untouched


def test_tutorial_source_noise_applies_to_its_rows(tutorial_xy: np.ndarray) -> None:
    clean = make(tutorial_xy, source="tutorial")
    noisy = make(tutorial_xy, source="tutorial", noise={"xy": 0.1, "label": 0.0})
    assert not np.array_equal(clean.train, noisy.train)
    np.testing.assert_array_equal(noisy.train[:, 2], labels_of(noisy.train[:, :2]))
    assert np.abs(noisy.train[:, :2] - clean.train[:, :2]).max() < 0.1 * 6


def test_no_noise_means_no_noise(tutorial_xy: np.ndarray) -> None:
    rows = all_rows(make(tutorial_xy, source="disk"))
    np.testing.assert_array_equal(rows[:, 2], labels_of(rows[:, :2]))


# --- out-of-domain ring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "radius"),
    [("disk", 20.0), ("annulus", 20.0), ("circle", 14.0), ("tutorial", None)],
)
def test_ood_ring(tutorial_xy: np.ndarray, source: str, radius: float | None) -> None:
    ds = make(tutorial_xy, source=source, r_min=5.0, ood={"n": 5000, "width": 0.25}, noise={"xy": 0.3, "label": 0.3})
    big_r = radius if radius is not None else float(radii(tutorial_xy).max())
    assert ds.train_radius == pytest.approx(big_r, rel=1e-6)
    r = radii(ds.ood)
    assert ds.ood.shape == (5000, 3)
    assert r.min() >= big_r * (1 - 1e-6) and r.max() <= big_r * 1.25 * (1 + 1e-6)
    assert_fraction(r < math.sqrt((big_r**2 + (1.25 * big_r) ** 2) / 2), 0.5)  # uniform over the ring's area
    np.testing.assert_array_equal(ds.ood[:, 2], labels_of(ds.ood[:, :2]))  # noise-free


# --- splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "split"), [(N, (0.8, 0.1, 0.1)), (1001, (0.5, 0.25, 0.25)), (7, (0.6, 0.2, 0.2))])
def test_split_sizes(tutorial_xy: np.ndarray, n: int, split: tuple[float, float, float]) -> None:
    frac = dict(zip(SPLITS, split, strict=True))
    ds = make(tutorial_xy, n=n, split=frac)
    counts = data_cfg(n=n, split=frac).split.counts(n)
    assert sum(counts.values()) == n
    for name in SPLITS:
        assert getattr(ds, name).shape == (counts[name], 3)
        assert abs(counts[name] - n * frac[name]) <= 1
    assert ds.ood.shape == (repo_params()["data"]["ood"]["n"], 3)


def test_splits_are_disjoint(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="disk")
    sets = {name: {row.tobytes() for row in getattr(ds, name)} for name in (*SPLITS, "ood")}
    for name in sets:
        assert len(sets[name]) == getattr(ds, name).shape[0], f"duplicate rows inside {name}"
    for a in sets:
        for b in sets:
            if a < b:
                assert not sets[a] & sets[b], f"{a} and {b} share rows"


def test_splits_come_from_one_distribution(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, source="disk", n=40_000, split={"train": 0.5, "val": 0.25, "test": 0.25})
    for name in SPLITS:  # contiguous slices of i.i.d. rows: each split is a uniform disk
        assert_fraction(radii(getattr(ds, name)) < 10.0, 0.25)


# --- seeds and global state ------------------------------------------------------------------


def test_same_seed_same_arrays(tutorial_xy: np.ndarray) -> None:
    over = {"noise": {"xy": 0.1, "label": 0.1}}
    a, b = make(tutorial_xy, seed=7, **over), make(tutorial_xy, seed=7, **over)
    for name in (*SPLITS, "ood", "tutorial"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


@pytest.mark.parametrize("source", ["disk", "annulus", "circle"])
def test_different_seed_different_arrays(tutorial_xy: np.ndarray, source: str) -> None:
    a, b = make(tutorial_xy, seed=1, source=source, r_min=2.0), make(tutorial_xy, seed=2, source=source, r_min=2.0)
    for name in (*SPLITS, "ood"):
        assert not np.array_equal(getattr(a, name), getattr(b, name)), name


def test_no_global_rng_is_used_or_changed(tutorial_xy: np.ndarray) -> None:
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state(), random.getstate()
    first = make(tutorial_xy, noise={"xy": 0.1, "label": 0.1})
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1]) and np_before[2:] == np_after[2:]
    assert random.getstate() == py_before
    np.random.seed(999)  # a different global state changes nothing
    second = make(tutorial_xy, noise={"xy": 0.1, "label": 0.1})
    assert first.train.tobytes() == second.train.tobytes()


# --- summary and the tutorial file ---------------------------------------------------------


def test_summarize_matches_arrays(tutorial_xy: np.ndarray) -> None:
    ds = make(tutorial_xy, n=500)
    summary = summarize(ds)
    assert set(summary) == {*SPLITS, "ood", "tutorial"}
    for name, s in summary.items():
        rows = getattr(ds, name)
        assert s["rows"] == rows.shape[0]
        assert s["label"] == [float(rows[:, 2].min()), float(rows[:, 2].max())]
        assert s["radius"] == pytest.approx([radii(rows).min(), radii(rows).max()])


def _bad_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "points.csv"
    path.write_text(text)
    return path


GOOD = TUTORIAL.read_text()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD.replace("x,y", "a,b", 1), "header"),
        ("\n".join(GOOD.splitlines()[:-1]) + "\n", "36"),  # 35 rows
        (GOOD + "1.0,2.0\n", "36"),  # 37 rows
        (GOOD.replace("8.3572", "nan", 1), "finite"),
        (GOOD.replace("8.3572", "abc", 1), "not a CSV"),
        ("x,y,z\n" + "1,2,3\n" * 36, "columns"),
        ("", "not a CSV"),
    ],
    ids=["header", "35 rows", "37 rows", "nan", "text", "three columns", "empty"],
)
def test_load_tutorial_rejects(tmp_path: Path, text: str, fragment: str) -> None:
    path = _bad_csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_tutorial(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_load_tutorial_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_tutorial(tmp_path / "missing.csv")


def test_load_tutorial(tutorial_xy: np.ndarray) -> None:
    assert tutorial_xy.shape == (36, 2) and tutorial_xy.dtype == np.float32
    r = radii(tutorial_xy)
    assert r.min() > 13.5 and r.max() < 14.5  # one circle of radius ≈ 14, as the source had
