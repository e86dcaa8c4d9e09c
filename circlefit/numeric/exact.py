"""Sums of products whose float64 result does not depend on the CPU, the BLAS kernel or the thread count.

A BLAS `dgemm` adds its products in an order that depends on the kernel it picked for the CPU
(AVX2, AVX-512, the vendor's branch) and on the thread count, so its last bits differ between
machines. Here every operand is first split, per column, into integer-valued float64 slices of
`bits` bits each (Ozaki's error-free splitting). A product of two slices is then a sum of
integers that stays below 2⁵³, so BLAS computes it *exactly*, in whatever order it likes; the
exact partial sums are added as int64 (associative, so chunks and ranks may come in any order)
and combined once, in a fixed order, into float64. The result is the same bits on every x86-64
CPU, with 1 or many threads, in one process or summed over torchrun ranks (`reduce`).

Pure numpy; no torch. See RELIABILITY.md "Numeric policy" for where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ExactSum",
    "Reduce",
    "Split",
    "combine",
    "dot_t",
    "exponents",
    "fsum_rows",
    "gram",
    "local",
    "matmul",
    "pairs",
    "plan_split",
]

# Sums over ranks of int64 accumulators / float64 maxima / row counts (identity in one process).
Reduce = Callable[[np.ndarray, str], np.ndarray]
_MANTISSA = 53  # float64 significand bits: integers up to 2**53 are exact
_ACCUMULATOR = 62  # int64 head-room we allow the exact sums to use


def local(a: np.ndarray, op: str) -> np.ndarray:
    """The Reduce of one process: nothing to combine."""
    return a


@dataclass(frozen=True)
class Split:
    """How operands are sliced: `bits` per slice, `slices` slices, `chunk` rows per exact BLAS call."""

    bits: int
    slices: int
    chunk: int


def plan_split(rows: int, slices: int = 3) -> Split:
    """The widest slices for which `rows` products sum exactly, first in float64 per chunk, then in int64.

    `slices` × bits significant bits of every operand are kept, relative to its column's maximum:
    3 slices (60 bits up to 2²² rows) hold a float64 whole; 2 (40 bits) are plenty for a forward
    pass of float32 weights and need half the BLAS calls.
    """
    log_rows = max(1, math.ceil(math.log2(max(rows, 2))))
    bits = min(20, (_ACCUMULATOR - log_rows) // 2)
    if bits < 12:
        raise ValueError(f"{rows} rows are too many for exact sums of products")
    return Split(bits, slices, 1 << (_MANTISSA - 2 * bits))


def exponents(colmax: np.ndarray) -> np.ndarray:
    """Per column, e with max |column| < 2**e (0 for an all-zero column)."""
    _, e = np.frexp(colmax)
    return np.where(colmax > 0, e, 0).astype(np.int64)


def _slices(x: np.ndarray, exps: np.ndarray, split: Split) -> list[np.ndarray]:
    """Integer-valued float64 slices s_k with x = 2**e * sum_k s_k * 2**(-(k+1)*bits), the rest dropped."""
    rest = x * np.ldexp(1.0, -exps)[None, :]  # a power of two per column: exact, |rest| < 1
    step = float(2**split.bits)
    out = []
    for _ in range(split.slices):
        rest *= step  # exact
        whole = np.trunc(rest)
        out.append(whole)
        rest -= whole  # exact: the fractional part of a float64
    return out


def pairs(split: Split) -> list[tuple[int, int]]:
    """Slice pairs down to a weight 2**-(slices*bits) below the leading pair (smaller ones are dropped)."""
    return [(i, j) for i in range(split.slices) for j in range(split.slices) if i + j < split.slices]


def dot_t(
    x_chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    colmax: tuple[np.ndarray, np.ndarray],
    rows: int,
    reduce: Reduce = local,
    symmetric: bool = False,
    slices: int = 3,
) -> np.ndarray:
    """Xᵀ Y over row chunks (X [n, p], Y [n, q], float64), exact up to one final rounding per entry.

    `x_chunks()` yields (X_rows, Y_rows) blocks; `colmax` are the (global) max |column| of X and Y;
    `rows` the (global) row count. With `reduce` summing over ranks, the result is bitwise the
    single-process one. `symmetric`: X is Y, so the pair (j, i) is the transpose of (i, j).
    """
    split = plan_split(rows, slices)
    ex, ey = exponents(colmax[0]), exponents(colmax[1])
    used = pairs(split)
    acc: dict[tuple[int, int], np.ndarray] = {}
    for xb, yb in x_chunks():
        for start in range(0, len(xb), split.chunk):
            xs = _slices(xb[start : start + split.chunk], ex, split)
            ys = xs if symmetric else _slices(yb[start : start + split.chunk], ey, split)
            for i, j in used:
                if symmetric and i > j:
                    continue
                part = (xs[i].T @ ys[j]).astype(np.int64)  # exact: integers below 2**53
                acc[(i, j)] = acc[(i, j)] + part if (i, j) in acc else part
    if symmetric:
        for i, j in used:
            if i > j and (j, i) in acc:
                acc[(i, j)] = acc[(j, i)].T
    return combine(acc, ex, ey, split, reduce)


def combine(
    acc: dict[tuple[int, int], np.ndarray], ex: np.ndarray, ey: np.ndarray, split: Split, reduce: Reduce = local
) -> np.ndarray:
    """The float64 result from the int64 sums of slice pairs, in one fixed order (largest terms first).

    `acc[(i, j)]` holds Σ slice_i(x)·slice_j(y) over every row (a missing pair is zero), `ex`/`ey`
    the exponents of x's and y's columns. The same bits whoever computed the sums, and where.
    """
    total = np.zeros((len(ex), len(ey)))
    for i, j in pairs(split):
        summed = reduce(acc.get((i, j), np.zeros((len(ex), len(ey)), dtype=np.int64)), "sum")
        total += np.ldexp(summed.astype(np.float64), -(i + j + 2) * split.bits)
    return np.ldexp(total, ex[:, None] + ey[None, :])


def _colmax(a: np.ndarray) -> np.ndarray:
    return np.abs(a).max(axis=0) if len(a) else np.zeros(a.shape[1])


def gram(blocks: Callable[[], Iterator[np.ndarray]], width: int, reduce: Reduce = local) -> np.ndarray:
    """AᵀA of the row blocks `blocks()` yields (each [rows, width] float64), order-independent.

    The blocks are produced twice (once for the column maxima, once for the sums), so a caller
    can compute features on the fly and memory stays at one block.
    """
    colmax, rows = np.zeros(width), 0
    for block in blocks():
        colmax = np.maximum(colmax, _colmax(block))
        rows += len(block)
    colmax = reduce(colmax, "max")
    rows = int(reduce(np.array([rows], dtype=np.int64), "sum")[0])
    return dot_t(lambda: ((b, b) for b in blocks()), (colmax, colmax), rows, reduce, symmetric=True)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in float64, the same bits on any CPU.

    A short contraction (≤ 8, e.g. the first layer's two inputs) is summed term by term in a fixed
    order; a longer one is sliced as `dot_t` slices (error-free sums, one rounding).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[1] == 0:
        return np.zeros((a.shape[0], b.shape[1]))
    if a.shape[1] <= 8:
        out = a[:, 0:1] * b[0]
        for k in range(1, a.shape[1]):
            out += a[:, k : k + 1] * b[k]
        return out
    # dot_t of aᵀ and b, written for rows: a row is sliced with its own exponent (its result depends
    # on that row alone), its two slices are made in place, and the integer products are the same.
    split = plan_split(a.shape[1], slices=2)
    ea, eb = exponents(np.abs(a).max(axis=1) if a.size else np.zeros(len(a))), exponents(_colmax(b))
    low = a * np.ldexp(1.0, split.bits - ea)[:, None]  # |low| < 2**bits: the first slice is its integer part
    high = np.trunc(low)
    low -= high  # exact: the fraction
    low *= float(2**split.bits)  # exact
    np.trunc(low, out=low)
    ys = _slices(b, eb, split)
    acc = {(i, j): ((high, low)[i] @ ys[j]).astype(np.int64) for i, j in pairs(split)}  # exact: integers < 2**53
    return combine(acc, ea, eb, split)


def fsum_rows(values: np.ndarray) -> float:
    """The correctly rounded sum of a float64 vector (math.fsum): independent of order and CPU."""
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


class ExactSum:
    """The correctly rounded sum of float64 values fed in any number of blocks, in any order, on any rank.

    Each value is m·2^(e-53) with m a 53-bit integer (frexp, exact); the m of equal e are added as
    int64 (in two 26/27-bit halves, so 2^36 values cannot overflow a bucket). The total is exact
    until `value()` rounds it once: bitwise math.fsum of all the values, streamed, with memory
    independent of their count, and summed over torchrun ranks by adding the buckets (`reduce`).
    """

    _OFFSET = 1074  # frexp's exponent of the smallest subnormal is -1073: buckets 0 … 2098
    _BUCKETS = 2099

    def __init__(self) -> None:
        self.buckets = np.zeros((2, self._BUCKETS), dtype=np.int64)  # high and low halves of the mantissas

    def add(self, values: np.ndarray) -> ExactSum:
        """Add finite float64 values (a non-finite one is a ValueError: there is no exact sum of it)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(v).all():
            raise ValueError("ExactSum takes finite values only")
        for start in range(0, len(v), 1 << 20):
            m, e = np.frexp(v[start : start + (1 << 20)])
            whole = (m * float(1 << 53)).astype(np.int64)  # exact: |m| < 1
            high = whole >> 26  # floor: whole = high·2^26 + low, 0 <= low < 2^26
            at = e + self._OFFSET
            # bincount adds in float64, exactly here: at most 2^20 integers below 2^27 per bucket (< 2^53)
            for half, part in enumerate((high, whole - (high << 26))):
                sums = np.bincount(at, weights=part.astype(np.float64), minlength=self._BUCKETS)
                self.buckets[half] += sums.astype(np.int64)
        return self

    def merge(self, other: ExactSum) -> ExactSum:
        """Add another accumulator's values (exact: integer buckets)."""
        self.buckets += other.buckets
        return self

    def value(self, reduce: Reduce = local) -> float:
        """The sum, rounded once to the nearest float64 (over every rank with `reduce`)."""
        high, low = reduce(self.buckets, "sum")
        total = sum(((int(h) << 26) + int(lo)) << b for b, (h, lo) in enumerate(zip(high, low, strict=True)) if h or lo)
        return total / (1 << (self._OFFSET + 53))  # int / int: correctly rounded
