"""The least-squares method: hinges placed where the data is, the output layer solved exactly.

A one-hidden-layer ReLU net on 2-D inputs is a sum of ridge functions g_k(u_k · z), each
piecewise linear with a knot per unit. So:

1. **Initialize** (`layout`): for K evenly spaced directions u_k, spread the units' knots evenly
   over the standardized training rows' range along u_k, plus `margin` of it on each side.
2. **Solve** (`solve_output`): the output layer is linear in the hidden features, so it is a
   linear least-squares problem, solved in float64 from the exact normal equations
   (`circlefit.numeric.exact`), with a small penalty on changes of slope-change between neighbouring
   knots (`smoothness`: the ridge functions' curvature continues smoothly, which also decides
   the knots beyond the data, i.e. what the model does just outside it) and a tiny `ridge` that
   makes hinges no row reaches weigh zero.
3. **Select**: each K in `train.lstsq.directions` is fitted and the one with the lowest
   validation loss of its *stored float32* weights is kept. Few directions with many knots fit
   functions that are sums of few ridge functions (x² + y² needs 3); many directions fit others.

Nothing here knows the target: it sees rows. Deeper nets pass the first layer's hinges through
identity blocks. Everything is numpy float64 with CPU-independent sums, so the weights are the
same bits on every x86-64 CPU, at any thread count, and summed over torchrun ranks (`Reduce`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from circlefit.config import PARAMS_FILE, LstsqConfig, ModelConfig, TrainConfig
from circlefit.data.normalize import Stats
from circlefit.errors import TrainingDiverged
from circlefit.numeric import mlp64
from circlefit.numeric.exact import Reduce, gram, local, sum_squares
from circlefit.numeric.mlp64 import Weights
from circlefit.numeric.solve import cholesky_solve
from circlefit.train.distributed import Dist
from circlefit.train.result import CurveRow, Rows, TrainResult, summary

__all__ = ["Candidate", "Fit", "Layout", "fit", "layout", "solve_output", "train"]

log = logging.getLogger(__name__)
_BLOCK_ROWS = 1 << 15  # rows of hidden features held at once while the normal equations accumulate


@dataclass(frozen=True)
class Layout:
    """Hidden layers (float32) and, per direction, its units in knot order and which are edge knots."""

    hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
    groups: tuple[tuple[int, ...], ...]
    edge: frozenset[int]


@dataclass(frozen=True)
class Candidate:
    directions: int
    train_loss: float  # standardized MSE of the stored float32 weights
    val_loss: float


@dataclass(frozen=True)
class Fit:
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # float32 (W, b) per Linear layer
    candidates: tuple[Candidate, ...]
    best: int  # index into candidates


def _directions(k: int) -> np.ndarray:
    """K unit vectors at angles πi/K (a direction and its opposite give the same hinges)."""
    angles = [math.pi * i / k for i in range(k)]
    return np.array([[math.cos(a), math.sin(a)] for a in angles])


def layout(z: np.ndarray, widths: tuple[int, ...], k: int, s: LstsqConfig, reduce: Reduce = local) -> Layout:
    """Hidden layers with the first layer's knots spread evenly over the data's range along K directions.

    Unit input is measured in knot spacings (w = u/h, b = -c/h), so every activation sees its
    bend at the knot over about one spacing. min(widths) hinges are placed; later hidden layers
    pass them through identity blocks, and units past them keep zero weights.
    """
    dirs = _directions(k)
    proj = z[:, :1] * dirs[:, 0] + z[:, 1:2] * dirs[:, 1]  # [N, K], elementwise: the same bits on any CPU
    lo_hi = np.concatenate([-proj.min(axis=0), proj.max(axis=0)]) if len(z) else np.zeros(2 * k)
    lo_hi = reduce(lo_hi, "max")
    lo, hi = -lo_hi[:k], lo_hi[k:]
    span = hi - lo
    span = np.maximum(span, max(float(span.max()) * 1e-3, 1e-6))  # a zero-variance direction still gets spaced knots
    kept = min(widths)  # hinges the identity blocks can pass through to the last hidden layer
    counts = [kept // k + (i < kept % k) for i in range(k)]
    w1, b1, groups, edge, unit = [], [], [], set(), 0
    for i, m in enumerate(counts):
        if m == 0:
            continue
        start, full = lo[i] - s.margin * span[i], span[i] * (1 + 2 * s.margin)
        spacing = full / m
        knots = start + (np.arange(m) + 0.5) * spacing
        w1.append(np.repeat(dirs[i][None, :] / spacing, m, axis=0))
        b1.append(-knots / spacing)
        units = range(unit, unit + m)
        outer = (knots <= lo[i] + s.edge * span[i]) | (knots >= hi[i] - s.edge * span[i])
        groups.append(tuple(units))
        edge |= {u for u, out in zip(units, outer, strict=True) if out}
        unit += m
    dead = widths[0] - kept  # first-layer units past `kept` stay zero: relu(0) = 0 carries nothing
    w1.append(np.zeros((dead, 2)))
    b1.append(np.zeros(dead))
    layers = [(np.concatenate(w1).astype(np.float32), np.concatenate(b1).astype(np.float32))]
    for prev, cur in itertools.pairwise(widths):
        eye = np.zeros((cur, prev), dtype=np.float32)
        np.fill_diagonal(eye, 1.0)
        layers.append((eye, np.zeros(cur, dtype=np.float32)))
    return Layout(tuple(layers), tuple(groups), frozenset(edge))


def _penalty(width: int, lay: Layout) -> np.ndarray:
    """Σ (v_{i+1} - v_i)² over neighbouring knots of a direction where either is an edge knot.

    A hinge's output weight is the slope change at its knot, so this asks neighbouring knots for
    similar curvature (a quadratic pays nothing) where few or no rows decide it: past the data
    and near its ends. Inside, kinks stay sharp. The first unit of a direction also carries the
    ridge function's linear part, so it is left free.
    """
    p = np.zeros((width, width))
    for g in lay.groups:
        for a, b in itertools.pairwise(g[1:]):
            if a not in lay.edge and b not in lay.edge:
                continue
            p[a, a] += 1
            p[b, b] += 1
            p[a, b] -= 1
            p[b, a] -= 1
    return p


def solve_output(normal: np.ndarray, lay: Layout, s: LstsqConfig) -> np.ndarray:
    """Output weights [width] and bias from the normal equations of [H, 1, y]; float64.

    Penalties scale with the mean diagonal of HᵀH, so they mean the same at any row count and
    feature scale. The ridge covers the bias too: hinges whose knots lie before the data are
    affine on it and can stand in for the constant, and with every unknown damped the system is
    positive definite by a margin far above the exact Gram's rounding.
    """
    width = normal.shape[0] - 2
    g = normal[: width + 1, : width + 1].copy()
    rhs = normal[: width + 1, width + 1].copy()
    scale = float(np.mean(np.diag(g)[:width])) or 1.0
    g[:width, :width] += scale * s.smoothness * _penalty(width, lay)
    g += scale * s.ridge * np.eye(width + 1)
    return cholesky_solve(g, rhs)


def _blocks(
    rows: np.ndarray, weights: Weights, hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
) -> Iterator[np.ndarray]:
    """[H, 1, y_std] for row blocks: hidden features of standardized inputs, a ones column, the standardized label."""
    mean, std = float(weights.label_mean[0]), float(weights.label_std[0])
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        h = mlp64.features(hidden, weights.activation, mlp64.standardize(weights, block[:, :2]))
        y = (block[:, 2].astype(np.float64) - mean) / std
        yield np.concatenate([h, np.ones((len(block), 1)), y[:, None]], axis=1)


def _source(
    rows: np.ndarray, base: Weights, hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
) -> Callable[[], Iterator[np.ndarray]]:
    """The blocks `gram` reads twice; one block's features are computed once and kept."""
    if len(rows) <= _BLOCK_ROWS:
        blocks = list(_blocks(rows, base, hidden))
        return lambda: iter(blocks)
    return lambda: _blocks(rows, base, hidden)


def _loss(weights: Weights, rows: np.ndarray, reduce: Reduce) -> float:
    """Standardized MSE of `weights` on `rows` (global over ranks), CPU-independent."""
    pred = mlp64.predict(weights, rows[:, :2])
    err = (pred - rows[:, 2].astype(np.float64)) / float(weights.label_std[0])
    count = int(reduce(np.array([len(rows)], dtype=np.int64), "sum")[0])
    return sum_squares(err, reduce) / count if count else math.nan


def fit(
    base: Weights,
    widths: tuple[int, ...],
    train: np.ndarray,
    val: np.ndarray,
    s: LstsqConfig,
    reduce: Reduce = local,
) -> Fit:
    """Fit every candidate layout on `train` and keep the best on `val`. `base` carries the normalizer."""
    z = mlp64.standardize(base, train[:, :2])
    fits, cands = [], []
    for k in s.directions:
        lay = layout(z, widths, k, s, reduce)
        normal = gram(_source(train, base, lay.hidden), widths[-1] + 2, reduce)
        out = solve_output(normal, lay, s)
        head = (out[None, :-1].astype(np.float32), out[-1:].astype(np.float32))
        weights = dataclasses.replace(base, layers=(*lay.hidden, head))
        cand = Candidate(k, _loss(weights, train, reduce), _loss(weights, val, reduce))
        log.info("lstsq: %d directions: train loss %.3g, val loss %.3g", k, cand.train_loss, cand.val_loss)
        fits.append(weights.layers)
        cands.append(cand)
    best = min(range(len(cands)), key=lambda i: (not math.isfinite(cands[i].val_loss), cands[i].val_loss, i))
    return Fit(fits[best], tuple(cands), best)


def train(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    stats: Stats,
    rows: Rows,
    dist: Dist,
    on_eval: Callable[[CurveRow], None] | None = None,
    source: str = PARAMS_FILE,
) -> TrainResult:
    """Train by least squares on the CPU in float64: the same bytes on every machine, thread and rank count."""
    t0 = time.perf_counter()
    reduce = dist.reduce_np
    base = Weights((), model_cfg.activation, **stats.buffers())
    result = fit(base, model_cfg.hidden, rows.train, rows.val, cfg.lstsq, reduce)
    weights = dataclasses.replace(base, layers=result.layers)
    curve: list[CurveRow] = [
        {"step": i, "phase": "lstsq", "directions": c.directions, "train_loss": c.train_loss, "val_loss": c.val_loss}
        for i, c in enumerate(result.candidates, start=1)
    ]
    if on_eval is not None:
        for row in curve:
            on_eval(row)
    best = result.candidates[result.best]
    if not (math.isfinite(best.val_loss) and math.isfinite(best.train_loss)):
        raise TrainingDiverged(f"least squares gave a non-finite loss ({best}); no model was written")
    train_rows = int(reduce(np.array([len(rows.train)], dtype=np.int64), "sum")[0])
    facts = summary(
        "lstsq",
        "cpu",
        curve,
        best_step=result.best + 1,
        best_val_loss=best.val_loss,
        final=(best.train_loss, best.val_loss),
        train_rows=train_rows,
        weights=weights,
        dist=dist,
        threads=cfg.threads,
        numpy=np.__version__,
        directions=best.directions,
    )
    wall = time.perf_counter() - t0
    log.info("least squares: %d layouts on %d rows in %.2f s; best val loss %.3g",
             len(curve), train_rows, wall, best.val_loss)  # fmt: skip
    return TrainResult(weights, curve, facts, {"wall_s": wall})
