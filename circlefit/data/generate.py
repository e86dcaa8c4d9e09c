"""Circle/disk coordinate data: pure, seeded generators and splits (numpy only, no IO but the tutorial CSV)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from circlefit.config import DataConfig
from circlefit.errors import DataError

__all__ = ["SPLITS", "TUTORIAL_POINTS", "Dataset", "generate", "labels_of", "load_tutorial", "summarize"]

SPLITS = ("train", "val", "test")
TUTORIAL_POINTS = 36  # the source tutorial's points, all on one circle of radius ≈ 14
_CHUNK = 1 << 20  # rows drawn per RNG call; fixed so outputs never depend on memory


@dataclass(frozen=True)
class Dataset:
    """Arrays of shape [N, 3] float32: columns x, y, label = x² + y² (+ label noise)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    ood: np.ndarray  # ring just outside the training radius, noise-free
    tutorial: np.ndarray  # the source tutorial's 36 points, noise-free
    train_radius: float
    held_out: bool = True  # False when val/test are the training points (source: tutorial)


def labels_of(xy: np.ndarray) -> np.ndarray:
    """x² + y² of float32 coordinates, computed in float64 and rounded once."""
    xy64 = xy.astype(np.float64)
    return (xy64[:, 0] ** 2 + xy64[:, 1] ** 2).astype(np.float32)


def load_tutorial(path: str | Path) -> np.ndarray:
    """The tutorial's points as float32 [36, 2] from a two-column CSV with header x,y."""
    path = Path(path)
    try:
        header = path.read_text(encoding="utf-8").splitlines()[0].strip()
        xy = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a CSV of numbers with header 'x,y': {e}") from None
    if header.replace(" ", "") != "x,y" or xy.shape[1] != 2:
        raise DataError(f"{path}: expected columns x,y, got header {header!r}, {xy.shape[1]} columns")
    if xy.shape[0] != TUTORIAL_POINTS or not np.isfinite(xy).all():
        raise DataError(f"{path}: expected {TUTORIAL_POINTS} finite rows, got {xy.shape[0]}")
    return xy.astype(np.float32)


def _radii(rng: np.random.Generator, cfg: DataConfig, n: int) -> np.ndarray:
    u = rng.random(n)
    if cfg.source == "disk":  # uniform over area: P(r <= s) = (s / r_max)²
        return cfg.r_max * np.sqrt(u)
    if cfg.source == "annulus":
        return np.sqrt(cfg.r_min**2 + u * (cfg.r_max**2 - cfg.r_min**2))
    return np.full(n, cfg.radius)


def _ring(rng: np.random.Generator, r_lo: float, r_hi: float, n: int) -> np.ndarray:
    r = np.sqrt(r_lo**2 + rng.random(n) * (r_hi**2 - r_lo**2))
    theta = rng.random(n) * (2 * np.pi)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _with_labels(xy: np.ndarray) -> np.ndarray:
    xy32 = xy.astype(np.float32)
    return np.concatenate([xy32, labels_of(xy32)[:, None]], axis=1)


def _noisy_rows(rng: np.random.Generator, cfg: DataConfig, xy: np.ndarray) -> np.ndarray:
    """Rows [x, y, label] with the configured noise; labels follow the stored coordinates."""
    if cfg.noise.xy > 0:
        xy = xy + rng.normal(0.0, cfg.noise.xy, size=xy.shape)
    block = _with_labels(xy)
    if cfg.noise.label > 0:
        block[:, 2] += rng.normal(0.0, cfg.noise.label, size=len(block)).astype(np.float32)
    return block


def _fill(rng: np.random.Generator, cfg: DataConfig, out: np.ndarray) -> None:
    """Fill `out` chunk by chunk so memory stays at one output copy plus one chunk."""
    for start in range(0, out.shape[0], _CHUNK):
        m = min(_CHUNK, out.shape[0] - start)
        r = _radii(rng, cfg, m)
        theta = rng.random(m) * (2 * np.pi)
        out[start : start + m] = _noisy_rows(rng, cfg, np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))


def generate(cfg: DataConfig, tutorial_xy: np.ndarray) -> Dataset:
    """Draw all splits from `np.random.default_rng(cfg.seed)`; no global state is touched."""
    rng = np.random.default_rng(cfg.seed)
    tutorial = _with_labels(tutorial_xy)
    if cfg.source == "tutorial":
        # The tutorial's own protocol: it fits all 36 points and has no held-out data (its
        # radii carry ~0.1 of measurement noise, so held-out points would measure that noise).
        # train = val = test = the 36 points; the manifest records held_out = false.
        rows = _noisy_rows(rng, cfg, tutorial_xy.astype(np.float64))
        train_radius = float(np.sqrt(labels_of(tutorial_xy)).max())
        train, val, test = rows, rows.copy(), rows.copy()
    else:
        rows = np.empty((cfg.n, 3), dtype=np.float32)
        _fill(rng, cfg, rows)  # i.i.d. rows: contiguous slices are random splits
        train_radius = cfg.radius if cfg.source == "circle" else cfg.r_max
        counts = cfg.split.counts(len(rows))
        a, b = counts["train"], counts["train"] + counts["val"]
        train, val, test = rows[:a], rows[a:b], rows[b:]
    ood = _with_labels(_ring(rng, train_radius, train_radius * (1 + cfg.ood.width), cfg.ood.n))
    return Dataset(train, val, test, ood, tutorial, train_radius, held_out=cfg.source != "tutorial")


def summarize(ds: Dataset) -> dict[str, dict[str, object]]:
    """Counts and ranges per split, for the manifest."""
    out: dict[str, dict[str, object]] = {}
    for name in (*SPLITS, "ood", "tutorial"):
        arr: np.ndarray = getattr(ds, name)
        r = np.sqrt(arr[:, 0].astype(np.float64) ** 2 + arr[:, 1].astype(np.float64) ** 2)
        out[name] = {
            "rows": int(arr.shape[0]),
            "x": [float(arr[:, 0].min()), float(arr[:, 0].max())],
            "y": [float(arr[:, 1].min()), float(arr[:, 1].max())],
            "label": [float(arr[:, 2].min()), float(arr[:, 2].max())],
            "radius": [float(r.min()), float(r.max())],
        }
    return out
