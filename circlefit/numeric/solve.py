"""Linear solves in a fixed order of float64 operations: the same bits on every CPU (numpy, no LAPACK)."""

from __future__ import annotations

import math

import numpy as np

from circlefit.numeric.exact import fsum_rows

__all__ = ["cholesky_solve"]


def cholesky_solve(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve a x = r for symmetric positive definite `a`, in a fixed order of float64 operations.

    LAPACK's blocked kernels differ per CPU; this right-looking Cholesky uses only elementwise
    numpy operations and correctly rounded sums (math.fsum), so its bits do not.
    """
    n = len(a)
    low = np.array(a, dtype=np.float64)
    for j in range(n):
        pivot = low[j, j]
        if not pivot > 0:
            raise np.linalg.LinAlgError(f"matrix is not positive definite at column {j} (pivot {pivot:g})")
        low[j, j] = math.sqrt(pivot)
        low[j + 1 :, j] /= low[j, j]
        low[j + 1 :, j + 1 :] -= np.multiply.outer(low[j + 1 :, j], low[j + 1 :, j])
    y = np.zeros(n)
    for i in range(n):
        y[i] = (r[i] - fsum_rows(low[i, :i] * y[:i])) / low[i, i]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        x[i] = (y[i] - fsum_rows(low[i + 1 :, i] * x[i + 1 :])) / low[i, i]
    return x
