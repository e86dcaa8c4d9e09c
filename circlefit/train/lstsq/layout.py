"""The hidden layer of a candidate: K hinge directions, knots where the data is, and what the penalty needs.

A direction's units are, in knot order: one *linear unit* whose knot lies below every row (it is
affine on the data and carries the ridge function's slope), `margin_knots` knots over the `margin`
zone below the data, the *inner* knots evenly spaced over the data's range, and `margin_knots`
knots over the zone above it. Margin knots see no row as a kink; they only decide how the model
continues just outside the data, so they are few and coarse, and a direction too narrow to hold
them at the inner spacing gets none.

Everything here is read from the training rows in blocks (the data's extent along each direction,
the rows between neighbouring knots): memory stays at one block at any row count, and min, max and
int64 counts are the same in any order, so ranks combine them exactly (`reduce`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from circlefit.config import LstsqConfig
from circlefit.numeric import mlp64
from circlefit.numeric.exact import Reduce, local
from circlefit.numeric.mlp64 import Weights

__all__ = ["BLOCK_ROWS", "Layout", "layout", "standardized_blocks"]

BLOCK_ROWS = 1 << 15  # rows per block when a pass over the data only needs their two coordinates


@dataclass(frozen=True)
class Layout:
    """Hidden layers (float32); per direction its units in knot order, their knots and curvature cells.

    `knots[u]`: knot of unit u along its direction (standardized units); `cell[u]`: the length over
    which its slope change stands for curvature (`_cells`); `scale[u]`: the unit's input scale (its
    w = u_k / scale); `support[u]`: training rows on its thinner side (a kink is seen only by rows on
    both sides); `mean_support[k]`, `span[k]`: the mean of that over direction k's inner knots, and
    the data's extent along direction k (standardized units: the penalty's unit of length).
    """

    hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
    groups: tuple[tuple[int, ...], ...]
    knots: np.ndarray
    cell: np.ndarray
    scale: np.ndarray
    support: np.ndarray
    mean_support: np.ndarray
    span: np.ndarray


def standardized_blocks(base: Weights, rows: np.ndarray, block: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """z = (xy - mean) / std of `rows` (float32 [N, ≥2]), block by block, as the model standardizes."""
    for start in range(0, len(rows), block):
        yield mlp64.standardize(base, rows[start : start + block, :2])


def directions(k: int) -> np.ndarray:
    """K unit vectors at angles πi/K (a direction and its opposite give the same hinges)."""
    angles = [math.pi * i / k for i in range(k)]
    return np.array([[math.cos(a), math.sin(a)] for a in angles])


def _knots(lo: float, span: float, m: int, s: LstsqConfig) -> tuple[np.ndarray, float]:
    """m knots of one direction in order (linear unit, low margin, inner, high margin) and the inner spacing."""
    if m == 1:  # a linear ridge function only
        return np.array([lo - span]), span
    # `margin_knots` per side where the margin zone holds them at no less than the inner spacing, else
    # none: a narrow direction keeps its few units on the data, and one margin knot adds only a chord.
    n_mg = s.margin_knots if s.margin > 0 and m - 1 - 2 * s.margin_knots >= 1 else 0
    if n_mg and s.margin * (m - 1 - 2 * n_mg) < n_mg:
        n_mg = 0
    n_in = m - 1 - 2 * n_mg
    h = span / n_in
    inner = lo + (np.arange(n_in) + 0.5) * h
    step = s.margin * span / n_mg if n_mg else 0.0
    below = lo - np.arange(n_mg, 0, -1) * step
    above = lo + span + np.arange(1, n_mg + 1) * step  # lo + span: hi, or past it where a zero span was widened
    first = lo - s.margin * span - h  # below every other knot: affine on every row
    return np.concatenate([[first], below, inner, above]), h


def _cells(knots: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per knot, the distance over which its slope change stands for curvature.

    A segment's slope is the ridge function's slope at the segment's representative point: the
    midpoint of its part inside the data range [lo, hi], or its own midpoint where it lies outside
    (the unbounded end segments as if one more knot followed at the last spacing). A knot's cell is
    the distance between its two segments' points, so a least-squares fit of a quadratic has the
    same curvature v / (scale · cell) at every knot, including the last knots inside the data,
    whose outer segment the data only partly covers.
    """
    if len(knots) < 2:
        return np.ones(len(knots))
    gaps = np.diff(knots)
    left = np.concatenate([[knots[0] - gaps[0]], knots])  # segment j runs from left[j] to right[j]
    right = np.concatenate([knots, [knots[-1] + gaps[-1]]])
    a, b = np.maximum(left, lo), np.minimum(right, hi)
    rep = np.where(a < b, (a + b) / 2, (left + right) / 2)
    return np.maximum(np.diff(rep), 1e-3 * float(gaps.min()))


def _extent(base: Weights, rows: np.ndarray, dirs: np.ndarray, reduce: Reduce) -> tuple[np.ndarray, np.ndarray]:
    """The data's min and max along each direction (over every rank)."""
    k = len(dirs)
    neg_lo_hi = np.full(2 * k, -np.inf)
    for z in standardized_blocks(base, rows):
        proj = z[:, :1] * dirs[:, 0] + z[:, 1:2] * dirs[:, 1]  # elementwise: the same bits on any CPU
        neg_lo_hi = np.maximum(neg_lo_hi, np.concatenate([-proj.min(axis=0), proj.max(axis=0)]))
    neg_lo_hi = reduce(neg_lo_hi, "max")
    if not np.isfinite(neg_lo_hi).all():  # no rows anywhere
        return np.zeros(k), np.zeros(k)
    return -neg_lo_hi[:k], neg_lo_hi[k:]


def _gap_counts(base: Weights, rows: np.ndarray, direction: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Rows in each gap between consecutive knots along `direction` (gap 0 below the first knot, gap m
    above the last), int64: exact over blocks and ranks in any order."""
    counts = np.zeros(len(knots) + 1, dtype=np.int64)
    for z in standardized_blocks(base, rows):
        proj = z[:, 0] * direction[0] + z[:, 1] * direction[1]
        counts += np.bincount(np.searchsorted(knots, proj, side="right"), minlength=len(knots) + 1)
    return counts


def layout(
    base: Weights, rows: np.ndarray, widths: tuple[int, ...], k: int, s: LstsqConfig, reduce: Reduce = local
) -> Layout:
    """The hidden layers of candidate K for training rows `rows` (raw float32 [N, 3]; `base` holds the normalizer).

    A unit's input is measured in inner knot spacings (w = u/h, b = -c/h). min(widths) hinges are
    placed; later hidden layers pass them through identity blocks, and units past them keep zero
    weights.
    """
    dirs = directions(k)
    lo, hi = _extent(base, rows, dirs, reduce)
    span = hi - lo
    span = np.maximum(span, max(float(span.max()) * 1e-3, 1e-6))  # a zero-variance direction still gets spaced knots
    kept = min(widths)  # hinges the identity blocks can pass through to the last hidden layer
    counts = [kept // k + (i < kept % k) for i in range(k)]
    w1, b1, groups, knots_all, cells, scales, supports, means, spans, unit = [], [], [], [], [], [], [], [], [], 0
    for i, m in enumerate(counts):
        if m == 0:
            continue
        knots, h = _knots(float(lo[i]), float(span[i]), m, s)
        w1.append(np.repeat(dirs[i][None, :] / h, m, axis=0))
        b1.append(-knots / h)
        gaps = reduce(_gap_counts(base, rows, dirs[i], knots), "sum")
        sup = np.minimum(gaps[:-1], gaps[1:])  # rows on each knot's thinner side
        inner = (knots > lo[i]) & (knots < hi[i])
        means.append(float(sup[inner].mean()) if inner.any() else 0.0)
        spans.append(float(span[i]))
        groups.append(tuple(range(unit, unit + m)))
        knots_all.append(knots)
        cells.append(_cells(knots, float(lo[i]), float(hi[i])))
        scales.append(np.full(m, h))
        supports.append(sup)
        unit += m
    dead = widths[0] - kept  # first-layer units past `kept` stay zero: relu(0) = 0 carries nothing
    w1.append(np.zeros((dead, 2)))
    b1.append(np.zeros(dead))
    layers = [(np.concatenate(w1).astype(np.float32), np.concatenate(b1).astype(np.float32))]
    for prev, cur in itertools.pairwise(widths):
        eye = np.zeros((cur, prev), dtype=np.float32)
        np.fill_diagonal(eye, 1.0)
        layers.append((eye, np.zeros(cur, dtype=np.float32)))

    def pad(parts: list[np.ndarray], fill: float) -> np.ndarray:
        return np.concatenate([*parts, np.full(dead, fill)])

    return Layout(
        tuple(layers), tuple(groups), pad(knots_all, 0.0), pad(cells, 1.0), pad(scales, 1.0),
        np.concatenate([*supports, np.zeros(dead, dtype=np.int64)]), np.array(means), np.array(spans),
    )  # fmt: skip
