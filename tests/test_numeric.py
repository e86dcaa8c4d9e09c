"""The CPU-independent arithmetic (circlefit.numeric): exact sums in any order, chunking or rank count, against
oracles (numpy's own products, math.fsum, LAPACK)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from circlefit.numeric import exact
from circlefit.numeric.solve import cholesky_solve


def _as_rank(halves: list[np.ndarray], others: list[np.ndarray] | None, seen: list[np.ndarray]) -> exact.Reduce:
    """A Reduce for one of two simulated ranks: global max and row count; int64 sums add the other's partials."""
    colmax = np.maximum(*[np.abs(h).max(axis=0) for h in halves])
    rows = np.array([sum(len(h) for h in halves)], dtype=np.int64)

    def reduce(x: np.ndarray, op: str) -> np.ndarray:
        if op == "max":
            return colmax
        if x.shape == (1,):
            return rows
        seen.append(x)
        return x + others[len(seen) - 1] if others is not None else x

    return reduce


def test_exact_sums_do_not_depend_on_order_chunks_or_ranks() -> None:
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((3000, 40)), 0.0) * rng.uniform(0.1, 100, size=40)
    whole = exact.gram(lambda: iter([a]), 40)
    assert np.array_equal(whole, exact.gram(lambda: iter([a[::-1].copy()]), 40))  # rows reversed
    assert np.array_equal(whole, exact.gram(lambda: iter(np.array_split(a, 7)), 40))  # in blocks
    halves = [a[:1234], a[1234:]]
    theirs: list[np.ndarray] = []
    exact.gram(lambda: iter([halves[1]]), 40, _as_rank(halves, None, theirs))  # rank 1 keeps its partial sums
    ours = exact.gram(lambda: iter([halves[0]]), 40, _as_rank(halves, theirs, []))  # rank 0 adds them in
    assert np.array_equal(whole, ours)
    np.testing.assert_allclose(whole, a.T @ a, rtol=1e-13)  # and it is the Gram matrix


def test_cholesky_solve_matches_lapack_and_is_exact_for_identity() -> None:
    rng = np.random.default_rng(1)
    m = rng.standard_normal((30, 30))
    a = m @ m.T + 30 * np.eye(30)
    r = rng.standard_normal(30)
    np.testing.assert_allclose(cholesky_solve(a, r), np.linalg.solve(a, r), rtol=1e-10)
    assert np.array_equal(cholesky_solve(np.eye(4), r[:4]), r[:4])
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        cholesky_solve(-np.eye(3), r[:3])


def test_exact_sum_is_math_fsum_in_any_blocks_and_order() -> None:
    rng = np.random.default_rng(2)
    cases = {
        "normal": rng.standard_normal(50_000) * 1e3,
        "wide exponents": rng.standard_normal(5000) * np.exp(rng.uniform(-700, 700, 5000)),
        "subnormal": rng.standard_normal(1000) * 1e-310,
        "cancelling": np.array([1e308, 1.0, -1e308, 2.0**-60]),
        "many equal": np.full(3_000_000, 0.1),  # one exponent bucket, far past int64 if it were not split
        "empty": np.zeros(0),
    }
    for name, v in cases.items():
        want = math.fsum(v.tolist())
        assert exact.ExactSum().add(v).value() == want, name
        parts = [exact.ExactSum().add(p) for p in np.array_split(rng.permutation(v), 7)]
        merged = parts[0]
        for p in parts[1:]:
            merged.merge(p)
        assert merged.value() == want, name
    with pytest.raises(ValueError, match="finite"):
        exact.ExactSum().add(np.array([1.0, np.inf]))


def test_exact_sum_adds_up_over_ranks() -> None:
    rng = np.random.default_rng(3)
    v = rng.standard_normal(10_000) ** 2
    ours, theirs = exact.ExactSum().add(v[:3000]), exact.ExactSum().add(v[3000:])
    total = ours.value(lambda a, op: a + theirs.buckets)  # what an all-reduce of the buckets gives
    assert total == math.fsum(v.tolist())


def test_matmul_rows_stand_alone_and_match_the_column_route() -> None:
    """exact.matmul is dot_t's sliced product of aᵀ and b: a row's result depends on that row alone, so any block
    of rows gives the same bits, and it is the true product up to one rounding of 2⁻⁴⁰-truncated operands."""
    rng = np.random.default_rng(4)
    a = np.maximum(rng.standard_normal((3000, 256)), 0.0) * np.exp(rng.uniform(-8, 8, (3000, 1)))
    b = rng.standard_normal((256, 3)).astype(np.float32).astype(np.float64)
    whole = exact.matmul(a, b)
    assert np.array_equal(np.concatenate([exact.matmul(p, b) for p in np.array_split(a, 11)]), whole)
    at = np.ascontiguousarray(a.T)
    route = exact.dot_t(lambda: [(at, b)], (np.abs(at).max(axis=0), np.abs(b).max(axis=0)), 256, slices=2)
    assert np.array_equal(route, whole)
    np.testing.assert_allclose(whole, a @ b, rtol=1e-9, atol=1e-9 * np.abs(a).max() * np.abs(b).max())
