"""The output layer of a candidate: its penalties and the fixed-order solve (cheap: the Gram is given).

Penalty: a curvature-continuation term N·λ·Σ (κ_{i+1} − κ_i)² / (c_{i+1} − c_i) between neighbouring
knots c_i of a direction, where κ_i is the curvature hinge i stands for (its slope change over
its cell, circlefit.train.lstsq.layout) and lengths are in units of the direction's data extent.
That is λ·N·∫(g‴)²: a quadratic pays nothing, and λ means the same at any width, row count and
data scale. It acts with strength `edge_smoothness` on the *thin* knots (no row on one side, or
fewer rows on their thinner side than `edge` × the direction's mean: along an axis the disk thins
to a sliver near ±R; the margin knots have none), so their curvature continues that of the
well-supported knots; and with strength `smoothness` on every pair (a P-spline; 0 keeps kinks
sharp). The linear unit is never penalized.

Every hinge weight gets a tiny `ridge` so the system is positive definite above the Cholesky's
rounding; the bias never does. The one-sided hinges are large and positive, so the fit's constant
lives in the bias: damping it would move the constant into the low-side hinges that are affine on
the data, and their tie to their neighbours would drag a wrong curvature into the data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from circlefit.config import LstsqConfig
from circlefit.numeric.solve import cholesky_solve
from circlefit.train.lstsq.layout import Layout

__all__ = ["penalty", "solve_output"]


def penalty(width: int, lay: Layout, edge: float) -> np.ndarray:
    """Σ (κ_{i+1} - κ_i)² / (c_{i+1} - c_i) over neighbouring knots of a direction where either is an edge knot.

    κ_i = v_i / (scale_i · cell_i) is the curvature hinge i stands for (its slope change v_i/scale_i
    spread over its cell), so a quadratic pays nothing at any knot spacing. With lengths measured
    in units of the direction's data extent S (hence the S⁵), the sum is
    ∫(g''')² over the penalized zone. Edge ("thin") knots: no row on one side, or fewer rows on
    their thinner side than `edge` × the direction's mean; `edge` = inf: every pair. The linear
    unit (first of a direction) is left free.
    """
    p = np.zeros((width, width))
    everywhere = math.isinf(edge)
    for gi, g in enumerate(lay.groups):
        span = float(lay.span[gi])
        span5 = span * span * span * span * span  # products, correctly rounded: libm's pow may differ by CPU
        limit = edge * lay.mean_support[gi] if not everywhere else 0.0
        thin = [everywhere or lay.support[u] == 0 or lay.support[u] < limit for u in g]
        for (ta, a), (tb, b) in itertools.pairwise(list(zip(thin, g, strict=True))[1:]):
            if not (ta or tb):
                continue
            ka = 1.0 / (lay.scale[a] * lay.cell[a])
            kb = 1.0 / (lay.scale[b] * lay.cell[b])
            w = span5 / (lay.knots[b] - lay.knots[a])  # lengths in units of the direction's span
            p[a, a] += w * ka * ka
            p[b, b] += w * kb * kb
            p[a, b] -= w * ka * kb
            p[b, a] -= w * ka * kb
    return p


def solve_output(normal: np.ndarray, lay: Layout, s: LstsqConfig, smoothness: float, edge: float) -> np.ndarray:
    """Output weights [width] and bias from the normal equations of [H, 1, y]; float64.

    Penalty: N · (edge_smoothness · P(edge) + smoothness · P(everywhere)), P the curvature-change
    sum of `penalty`. It scales with the row count N (the data term is N × the MSE), so both
    strengths mean the same at any N, width and feature scale. The ridge scales with the mean
    diagonal of the penalized HᵀH (it only keeps the system positive definite above the
    Cholesky's rounding: K >= 3 linear units and the bias are dependent, and hinges no row
    reaches are zero columns). The bias is never damped (see the module docstring).
    """
    width = normal.shape[0] - 2
    g = normal[: width + 1, : width + 1].copy()
    rhs = normal[: width + 1, width + 1].copy()
    rows = float(normal[width, width])  # Σ 1² over the rows: N, exactly
    if s.edge_smoothness > 0 and edge > 0:
        g[:width, :width] += rows * s.edge_smoothness * penalty(width, lay, edge)
    if smoothness > 0:
        g[:width, :width] += rows * smoothness * penalty(width, lay, math.inf)
    scale = float(np.mean(np.diag(g)[:width])) or 1.0  # of the penalized matrix: the Cholesky's rounding scale
    g[:width, :width] += scale * s.ridge * np.eye(width)  # every hinge weight; never the bias
    return cholesky_solve(g, rhs)
