"""train.method lstsq: hinges placed where the data is, the output layer solved exactly.

A one-hidden-layer ReLU net on (x, y) is a sum of ridge functions g_k(u_k · z), one per hinge
direction u_k, each piecewise linear with one knot per unit. With N units over K directions the
knots are about K/N apart, so each g_k is interpolated with an error ∝ (K/N)²; the K errors add
up, so at a fixed width the error grows like K^1.5 with every direction the target does not need.
x² + y² = (u₁·z)² + (u₂·z)² for any orthogonal pair u₁ ⊥ u₂ (in standardized coordinates,
a·z_x² + b·z_y² plus linear terms): two ridge functions, so K = 2 fits it best. Other targets
need other layouts (100·sin(x/8)·cos(y/8) is two ridge functions along the diagonals; a bump is
no finite sum), and nothing here knows the target: the validation rows decide.

1. Candidates: for every K in `directions`, a layout (circlefit.train.lstsq.layout) and its
   exact normal equations (circlefit.train.lstsq.normal, the expensive part, once per layout);
   then for every `edge` × `smoothness`, a penalty and a fixed-order solve (penalty; cheap).
2. Select: each candidate's output layer is rounded to float32 and scored on the validation
   rows; the lowest validation loss wins (ties: the earliest). Candidates are fitted and scored
   on a fixed, deterministic subsample, the first `select_rows` rows of the train and val splits
   (rows are drawn i.i.d., so a prefix is a random sample); at the default size that is all of them.
3. Refit: when the splits are larger than that, the winner is fitted again on every row.

Deeper nets pass the first layer's hinges through identity blocks. Every sum is exact
(circlefit.numeric.exact) and the solve runs in a fixed order, so the weights are the same bits on
every x86-64 CPU, at any thread or rank count, and on the GPU (`train.device: cuda` computes the
features and the normal equations there through torch, for one hidden ReLU layer).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from circlefit import config
from circlefit.config import PARAMS_FILE, LstsqConfig, ModelConfig, TrainConfig
from circlefit.data.normalize import Stats
from circlefit.errors import DeviceError, TrainingDiverged
from circlefit.numeric.backend import NUMPY, Backend, TorchBackend
from circlefit.numeric.mlp64 import Weights
from circlefit.train.distributed import Dist, shard_bounds
from circlefit.train.lstsq.layout import Layout, layout
from circlefit.train.lstsq.normal import Head, losses, normal_equations
from circlefit.train.lstsq.penalty import solve_output
from circlefit.train.result import CurveRow, Rows, TrainResult, summary

__all__ = ["Candidate", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    directions: int
    edge: float
    smoothness: float
    train_loss: float  # standardized MSE of the stored float32 weights on the (selection) train rows
    val_loss: float  # the same on the (selection) validation rows


@dataclass(frozen=True)
class _Fitted:
    candidate: Candidate
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]


def _backend(device: str, base: Weights, model: ModelConfig, source: str) -> Backend:
    if device == "cpu":
        return NUMPY
    if len(model.hidden) != 1 or base.activation != "relu":
        raise DeviceError(
            f"{source}: train.device {device!r} runs lstsq on the GPU for one hidden ReLU layer; model.hidden "
            f"{list(model.hidden)} with {base.activation!r} trains on the CPU (train.device: cpu)"
        )
    return TorchBackend(device)


def _prefix(rows: np.ndarray, total: int, limit: int, dist: Dist) -> np.ndarray:
    """This rank's part of the first `limit` rows of a split of `total` rows (sharded as distributed.shard)."""
    start, stop = shard_bounds(total, dist.rank, dist.world_size)
    return rows[: min(max(limit - start, 0), stop - start)]


def _candidates(
    base: Weights, widths: tuple[int, ...], rows: Rows, s: LstsqConfig, be: Backend, dist: Dist, threads: int
) -> list[_Fitted]:
    """Every (K, edge, smoothness) candidate fitted on `rows.train` and scored on both splits."""
    out = []
    variants = [(edge, lam) for edge in s.edge for lam in s.smoothness]
    for k in s.directions:
        lay = layout(base, rows.train, widths, k, s, dist.reduce_np)
        normal = normal_equations(base, lay, rows.train, be, dist.reduce_np, threads)  # once per layout
        heads = [_head(normal, lay, s, lam, edge) for edge, lam in variants]
        val = losses(base, lay, heads, rows.val, dist.reduce_np, threads)
        train = losses(base, lay, heads, rows.train, dist.reduce_np, threads)
        for (edge, lam), head, tl, vl in zip(variants, heads, train, val, strict=True):
            log.info(
                "lstsq: %d directions, edge %g, smoothness %g: train loss %.3g, val loss %.3g", k, edge, lam, tl, vl
            )
            out.append(_Fitted(Candidate(k, edge, lam, tl, vl), (*lay.hidden, head)))
    return out


def _head(normal: np.ndarray, lay: Layout, s: LstsqConfig, smoothness: float, edge: float) -> Head:
    out = solve_output(normal, lay, s, smoothness, edge)
    return out[None, :-1].astype(np.float32), out[-1:].astype(np.float32)


def _row(step: int, phase: str, c: Candidate) -> CurveRow:
    return {
        "step": step, "phase": phase, "directions": c.directions, "edge": c.edge, "smoothness": c.smoothness,
        "train_loss": c.train_loss, "val_loss": c.val_loss,
    }  # fmt: skip


def train(
    cfg: TrainConfig,
    model: ModelConfig,
    stats: Stats,
    rows: Rows,
    device: str,
    dist: Dist,
    on_eval: Callable[[CurveRow], None] | None = None,
    source: str = PARAMS_FILE,
    *,
    threads: int,
) -> TrainResult:
    """Select a candidate on the first `select_rows` rows, refit it on every row if there are more.

    `threads`: this process's worker threads (circlefit.train.train: its share of train.threads).
    """
    t0 = time.perf_counter()
    s, reduce = cfg.lstsq, dist.reduce_np
    base = Weights((), model.activation, **stats.buffers())
    be = _backend(device, base, model, source)
    n_train, n_val = (int(v) for v in reduce(np.array([len(rows.train), len(rows.val)], dtype=np.int64), "sum"))
    chosen = Rows(_prefix(rows.train, n_train, s.select_rows, dist), _prefix(rows.val, n_val, s.select_rows, dist))
    fitted = _candidates(base, model.hidden, chosen, s, be, dist, threads)
    curve = [_row(i, "select", f.candidate) for i, f in enumerate(fitted, start=1)]
    scores = [f.candidate.val_loss for f in fitted]
    best = min(range(len(scores)), key=lambda i: (not math.isfinite(scores[i]), scores[i], i))
    final = fitted[best]
    t_select = time.perf_counter() - t0
    if max(n_train, n_val) > s.select_rows:  # the winner again, on every row
        c = final.candidate
        one = config.replace(s, directions=(c.directions,), edge=(c.edge,), smoothness=(c.smoothness,))
        final = _candidates(base, model.hidden, rows, one, be, dist, threads)[0]
        curve.append(_row(len(curve) + 1, "refit", final.candidate))
    if on_eval is not None:
        for row in curve:
            on_eval(row)
    c = final.candidate
    if not (math.isfinite(c.val_loss) and math.isfinite(c.train_loss)):
        raise TrainingDiverged(f"least squares gave a non-finite loss ({c}); no model was written")
    weights = replace(base, layers=final.layers)
    picked = fitted[best].candidate
    facts = summary(
        "lstsq",
        "cuda" if device.startswith("cuda") else "cpu",
        curve,
        best_step=best + 1,
        best_val_loss=picked.val_loss,
        final=(c.train_loss, c.val_loss),
        train_rows=n_train,
        weights=weights,
        dist=dist,
        directions=picked.directions,
        edge=picked.edge,
        smoothness=picked.smoothness,
        select_rows=min(s.select_rows, n_train),
        threads=threads,
        numpy=np.__version__,
        **({"device_name": be.device_name()} if isinstance(be, TorchBackend) else {}),
    )
    wall = time.perf_counter() - t0
    log.info("least squares: %d candidates, %s on %d rows in %.2f s; val loss %.3g",
             len(fitted), "refit" if len(curve) > len(fitted) else "no refit", n_train, wall, c.val_loss)  # fmt: skip
    return TrainResult(weights, curve, facts, {"wall_s": wall, "select_s": t_select})
