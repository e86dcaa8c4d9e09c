"""The expensive part of a candidate: its exact normal equations, and the losses of its output layers.

Both stream the raw training rows in blocks, so memory stays at a few blocks whatever the row
count; both are exact sums (circlefit.numeric.exact), so the bits do not depend on the CPU, the
block size, how many worker threads share the blocks, or how many torchrun ranks add them up.

Normal equations [H, 1, y]ᵀ[H, 1, y] (H the last hidden layer's features, y the standardized
label): operands split into integer-valued slices, whose products any BLAS or GPU computes
exactly, summed as int64 and combined once on the host. For the usual net, one hidden ReLU layer,
each block's features are computed once, on the backend's device (numpy, or torch on CUDA): a
column's slicing exponent needs only its maximum, and that is known before the pass, because the
units of a direction share one weight row and ReLU(p + b) grows with p. Other nets (deeper, or
another activation) take the general path on the CPU: features from circlefit.numeric.mlp64, read
twice (maxima, then sums).

Losses: the standardized MSE of the stored float32 output layers, evaluated as
circlefit.numeric.mlp64 evaluates the model, and summed exactly (numpy, on the host).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from circlefit.numeric import mlp64
from circlefit.numeric.backend import NUMPY, Array, Backend
from circlefit.numeric.exact import ExactSum, Reduce, Split, combine, exponents, gram, local, pairs, plan_split
from circlefit.numeric.mlp64 import Weights
from circlefit.train.lstsq.layout import BLOCK_ROWS, Layout

__all__ = ["Head", "fast_path", "losses", "normal_equations"]

Head = tuple[np.ndarray, np.ndarray]  # a float32 output layer: weights [1, width], bias [1]
CPU_BLOCK = 2048  # rows per block on the CPU: a block's slices stay in cache
LOSS_BLOCK = mlp64.BLOCK_ROWS


def fast_path(base: Weights, lay: Layout) -> bool:
    """True for one hidden ReLU layer: features once per block, on any backend."""
    return len(lay.hidden) == 1 and base.activation == "relu"


def _blocks(rows: np.ndarray, size: int, threads: int, work: Callable[[np.ndarray, int], None]) -> None:
    """Call work(block, worker) for every `size`-row block of `rows`, on `threads` worker threads.

    numpy releases the GIL in its kernels, so workers overlap; each worker keeps its own
    accumulators, and exact sums do not care which worker took which block.
    """
    starts = iter(range(0, len(rows), size))
    lock = threading.Lock()

    def run(worker: int) -> None:
        while True:
            with lock:
                start = next(starts, None)
            if start is None:
                return
            work(rows[start : start + size], worker)

    if threads <= 1:
        run(0)
        return
    errors: list[BaseException] = []

    def guarded(worker: int) -> None:
        try:
            run(worker)
        except BaseException as e:  # re-raised in the caller's thread below
            errors.append(e)

    pool = [threading.Thread(target=guarded, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


@dataclass(frozen=True)
class _Relu:
    """[relu(z W1ᵀ + b1), 1, (label - mean)/std] of raw rows, as circlefit.numeric.mlp64 computes them."""

    w: np.ndarray  # [m, 2] float64 values of the float32 first layer
    b: np.ndarray  # [m]
    base: Weights

    @property
    def width(self) -> int:
        return len(self.b) + 2

    def _label(self, label: np.ndarray) -> np.ndarray:
        return (label.astype(np.float64) - float(self.base.label_mean[0])) / float(self.base.label_std[0])

    def colmax(self, rows: np.ndarray, reduce: Reduce) -> np.ndarray:
        """The exact max of every column over all rows (and ranks), from the distinct weight rows only.

        fl(p + b) and ReLU never decrease as p grows, so max over rows of relu(fl(p + b)) is
        relu(fl(max p + b)); a direction's units share one row of W1, so K + 1 projections do.
        """
        rows_w, which = np.unique(self.w, axis=0, return_inverse=True)
        high = np.full(len(rows_w) + 2, -np.inf)  # max p per distinct row, max label, -min label
        for start in range(0, len(rows), BLOCK_ROWS):
            block = rows[start : start + BLOCK_ROWS]
            z = mlp64.standardize(self.base, block[:, :2])
            p = z[:, 0:1] * rows_w[:, 0] + z[:, 1:2] * rows_w[:, 1]  # fl(fl(z0 w0) + fl(z1 w1)), as mlp64
            label = block[:, 2]
            high = np.maximum(high, np.concatenate([p.max(axis=0), [float(label.max()), -float(label.min())]]))
        high = reduce(high, "max")
        if not np.isfinite(high).all():  # no rows anywhere
            return np.zeros(self.width)
        h = np.maximum(high[: len(rows_w)][which.ravel()] + self.b, 0.0)
        y = np.abs(self._label(np.array([high[-2], -high[-1]], dtype=np.float32))).max()
        return np.concatenate([h, [1.0, y]])


class _Scaled:
    """A block's features times 2^(bits - e) per column, in place on the backend: slicing starts at trunc.

    Scaling by a power of two is exact and commutes with every rounding, so folding it into the
    weights gives bitwise the scaled features.
    """

    def __init__(self, feats: _Relu, exps: np.ndarray, split: Split, be: Backend) -> None:
        scale = np.ldexp(1.0, split.bits - exps)
        m = len(feats.b)
        self.m, self.be = m, be
        self.w0 = be.from_host(feats.w[:, 0] * scale[:m])[None, :]
        self.w1 = be.from_host(feats.w[:, 1] * scale[:m])[None, :]
        self.b = be.from_host(feats.b * scale[:m])[None, :]
        base = feats.base
        self.mean = be.from_host(base.xy_mean.astype(np.float64))[None, :]
        self.std = be.from_host(base.xy_std.astype(np.float64))[None, :]
        self.label_mean = be.from_host(base.label_mean.astype(np.float64))
        self.label_std = be.from_host(base.label_std.astype(np.float64))
        self.ones, self.yscale = float(scale[m]), float(scale[m + 1])

    def into(self, rows: np.ndarray, x: Array, z: Array, tmp: Array) -> None:
        """x[:r] = the scaled features of `rows` (r of them), with the same operations in the same order as mlp64."""
        be, m, r = self.be, self.m, len(rows)
        raw = be.rows(rows)
        z = z[:r]
        be.sub(raw[:, :2], self.mean, z)
        be.div(z, self.std, z)
        pre, t = x[:r, :m], tmp[:r]
        be.mul(z[:, 0:1], self.w0, pre)
        be.mul(z[:, 1:2], self.w1, t)
        be.add(pre, t, pre)
        be.add(pre, self.b, pre)
        be.relu(pre, pre)
        be.fill(x[:r, m], self.ones)
        y = x[:r, m + 1 : m + 2]
        be.sub(raw[:, 2:3], self.label_mean, y)
        be.div(y, self.label_std, y)
        be.mul(y, self.yscale, y)  # a power of two: exact


def _slice(be: Backend, x: Array, spare: list[Array], split: Split) -> list[Array]:
    """x's integer-valued slices (x scaled so |x| < 2^bits); x itself becomes the last one."""
    step = float(2**split.bits)
    out = []
    for s in spare:
        be.trunc(x, s)
        be.sub(x, s, x)  # exact: the fraction
        be.mul(x, step, x)  # exact
        out.append(s)
    be.trunc(x, x)
    return [*out, x]


def normal_equations(
    base: Weights,
    lay: Layout,
    rows: np.ndarray,
    backend: Backend = NUMPY,
    reduce: Reduce = local,
    threads: int = 1,
) -> np.ndarray:
    """[H, 1, y]ᵀ[H, 1, y] of raw rows `rows` (float32 [N, 3]) for layout `lay`, float64, exact up to one rounding."""
    count = int(reduce(np.array([len(rows)], dtype=np.int64), "sum")[0])
    if not fast_path(base, lay):
        return _general(base, lay, rows, count, reduce)
    w, b = lay.hidden[0]
    feats = _Relu(w.astype(np.float64), b.astype(np.float64), base)
    split = plan_split(count, slices=3)
    exps = exponents(feats.colmax(rows, reduce))
    scaled = _Scaled(feats, exps, split, backend)
    upper = [(i, j) for i, j in pairs(split) if i <= j]
    size = CPU_BLOCK if backend.device == "cpu" else split.chunk
    workers = threads if backend.device == "cpu" else 1
    width = feats.width
    accs = [{p: backend.zeros_i64((width, width)) for p in upper} for _ in range(workers)]
    bufs = [
        (backend.empty((size, width)), backend.empty((size, 2)), backend.empty((size, width - 2)),
         [backend.empty((size, width)) for _ in range(split.slices - 1)])
        for _ in range(workers)
    ]  # fmt: skip

    def work(block: np.ndarray, worker: int) -> None:
        x, z, tmp, spare = bufs[worker]
        r = len(block)
        scaled.into(block, x, z, tmp)
        sl = _slice(backend, x[:r], [s[:r] for s in spare], split)
        acc = accs[worker]
        for i, j in upper:  # size <= split.chunk rows: every product is exact
            backend.iadd(acc[(i, j)], backend.int_products(sl[i], sl[j]))

    _blocks(rows, size, workers, work)
    total = {p: sum((backend.to_host(a[p]) for a in accs[1:]), backend.to_host(accs[0][p])) for p in upper}
    both: dict[tuple[int, int], np.ndarray] = {**total, **{(j, i): total[(i, j)].T for i, j in upper if i != j}}
    return combine(both, exps, exps, split, reduce)


def _general(base: Weights, lay: Layout, rows: np.ndarray, count: int, reduce: Reduce) -> np.ndarray:
    """Any depth or activation: mlp64's features per block, read twice by circlefit.numeric.exact.gram."""
    mean, std = float(base.label_mean[0]), float(base.label_std[0])

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, len(rows), BLOCK_ROWS):
            block = rows[start : start + BLOCK_ROWS]
            h = mlp64.features(lay.hidden, base.activation, mlp64.standardize(base, block[:, :2]))
            y = (block[:, 2].astype(np.float64) - mean) / std
            yield np.concatenate([h, np.ones((len(block), 1)), y[:, None]], axis=1)

    width = lay.hidden[-1][0].shape[0] + 2
    if len(rows) <= BLOCK_ROWS:  # one block: compute it once
        cached = list(blocks())
        return gram(lambda: iter(cached), width, reduce)
    return gram(blocks, width, reduce)


def losses(
    base: Weights, lay: Layout, heads: list[Head], rows: np.ndarray, reduce: Reduce = local, threads: int = 1
) -> list[float]:
    """The standardized MSE on `rows` of every output layer in `heads` on top of `lay`, one pass for all.

    Each head's predictions are bitwise mlp64.predict's for the model it makes (a head is a column
    of one product, and a column's sums depend on that column alone); the squared errors are added
    exactly, so the loss is the correctly rounded mean whatever the blocks, workers or ranks.
    """
    # A head whose float32 weights overflowed scores inf (so it never wins, and a chosen one fails the
    # trainer's finite-loss check): exact.matmul's integer slices would turn inf or NaN into a finite number.
    # Every rank holds the same heads, so every rank takes the same branch.
    finite = [bool(np.isfinite(w).all() and np.isfinite(b).all()) for w, b in heads]
    if not all(finite):
        kept = iter(losses(base, lay, [h for h, ok in zip(heads, finite, strict=True) if ok], rows, reduce, threads))
        return [next(kept) if ok else math.inf for ok in finite]
    count = int(reduce(np.array([len(rows)], dtype=np.int64), "sum")[0])
    if not heads:
        return []
    w = np.concatenate([h[0] for h in heads])  # [heads, width] float32
    b = np.concatenate([h[1] for h in heads])
    std, mean = float(base.label_std[0]), float(base.label_mean[0])
    sums = [[ExactSum() for _ in heads] for _ in range(max(threads, 1))]

    def work(block: np.ndarray, worker: int) -> None:
        h = mlp64.features(lay.hidden, base.activation, mlp64.standardize(base, block[:, :2]))
        pred = mlp64.affine(h, w, b) * std + mean  # as mlp64.predict: out * label_std + label_mean
        err = (pred - block[:, 2].astype(np.float64)[:, None]) / std
        for i, acc in enumerate(sums[worker]):
            acc.add(err[:, i] * err[:, i])

    _blocks(rows, LOSS_BLOCK, threads, work)
    totals = [sums[0][i] for i in range(len(heads))]
    for other in sums[1:]:
        for acc, more in zip(totals, other, strict=True):
            acc.merge(more)
    return [acc.value(reduce) / count if count else float("nan") for acc in totals]
