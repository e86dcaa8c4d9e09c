"""Linear solves in a fixed order of float64 operations: the same bits on every CPU (numpy, no LAPACK)."""

from __future__ import annotations

import math

import numpy as np

from circlefit.numeric.exact import fsum_rows

__all__ = ["cholesky_solve"]


def cholesky_solve(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve a x = r for symmetric positive definite `a`, in a fixed order of float64 operations.

    LAPACK's blocked kernels differ per CPU; this right-looking Cholesky uses only elementwise
    numpy operations and correctly rounded sums (math.fsum), so its bits do not. It works on the
    rows of the upper factor U = Lᵀ (contiguous in memory): for a bitwise symmetric `a` every
    operation is the one a column-oriented Cholesky does, in the same order.
    """
    n = len(a)
    u = np.array(a, dtype=np.float64)
    for j in range(n):
        pivot = u[j, j]
        if not pivot > 0:
            raise np.linalg.LinAlgError(f"matrix is not positive definite at column {j} (pivot {pivot:g})")
        u[j, j] = math.sqrt(pivot)
        row = u[j, j + 1 :]
        row /= u[j, j]
        u[j + 1 :, j + 1 :] -= np.multiply.outer(row, row)
    low = np.ascontiguousarray(u.T)
    y = np.zeros(n)
    for i in range(n):
        y[i] = (r[i] - fsum_rows(low[i, :i] * y[:i])) / u[i, i]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        x[i] = (y[i] - fsum_rows(u[i, i + 1 :] * x[i + 1 :])) / u[i, i]
    return x
