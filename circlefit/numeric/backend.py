"""Where float64 array work runs: numpy on the CPU, or torch on any device, with the same bits.

The exact sums (circlefit.numeric.exact) need only operations that IEEE 754 rounds correctly
wherever they run: one elementwise add, subtract, multiply, divide, trunc or max at a time, and
products of integer-valued slices, which are exact in any order. A backend offers exactly those
and nothing that could fuse or reorder them: no fused multiply-add (torch.addcmul rounds once on
CPUs with FMA), no `alpha` scaling, no division by a host scalar (CUDA turns that into a multiply
by the reciprocal: every divisor lives on the device), no torch.compile. int64 sums are
exact in any order, so they may be accumulated on the device; the final float64 combine always
runs in numpy on the host.

`NUMPY` is the default and imports no torch; `TorchBackend("cuda")` is the lstsq method's GPU path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NUMPY", "Backend", "NumpyBackend", "TorchBackend"]

Array = Any  # np.ndarray or torch.Tensor, float64 or int64


class NumpyBackend:
    name = "numpy"
    device = "cpu"

    def from_host(self, a: np.ndarray) -> Array:
        return np.asarray(a, dtype=np.float64)

    def rows(self, rows32: np.ndarray) -> Array:
        """float32 rows → float64 backend array (exact)."""
        return np.asarray(rows32, dtype=np.float64)

    def empty(self, shape: tuple[int, ...]) -> Array:
        return np.empty(shape)

    def zeros_i64(self, shape: tuple[int, ...]) -> Array:
        return np.zeros(shape, dtype=np.int64)

    def mul(self, a: Array, b: Array | float, out: Array) -> Array:
        return np.multiply(a, b, out=out)

    def add(self, a: Array, b: Array, out: Array) -> Array:
        return np.add(a, b, out=out)

    def sub(self, a: Array, b: Array, out: Array) -> Array:
        return np.subtract(a, b, out=out)

    def div(self, a: Array, b: Array, out: Array) -> Array:
        return np.divide(a, b, out=out)

    def trunc(self, a: Array, out: Array) -> Array:
        return np.trunc(a, out=out)

    def relu(self, a: Array, out: Array) -> Array:
        return np.maximum(a, 0.0, out=out)

    def fill(self, a: Array, value: float) -> None:
        a[...] = value

    def int_products(self, a: Array, b: Array) -> Array:
        """aᵀb of integer-valued slices as int64 (exact: every partial sum is an integer below 2^53).

        numpy computes aᵀa of one buffer with SYRK, half the work of a general product.
        """
        return (a.T @ b).astype(np.int64)

    def iadd(self, acc: Array, part: Array) -> None:
        acc += part

    def to_host(self, a: Array) -> np.ndarray:
        return np.asarray(a)


class TorchBackend:
    """The same operations through torch on `device` ("cpu", "cuda", "cuda:1"); torch is imported here only."""

    name = "torch"

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self.device = device
        self._device = torch.device(device)

    def device_name(self) -> str:
        """The GPU's name (summary.json records where the normal equations were summed)."""
        return str(self._torch.cuda.get_device_name(self._device)) if self._device.type == "cuda" else "cpu"

    def from_host(self, a: np.ndarray) -> Array:
        return self._torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(self._device)

    def rows(self, rows32: np.ndarray) -> Array:
        t = self._torch.from_numpy(np.ascontiguousarray(rows32))
        return t.to(self._device).to(self._torch.float64)

    def empty(self, shape: tuple[int, ...]) -> Array:
        return self._torch.empty(shape, dtype=self._torch.float64, device=self._device)

    def zeros_i64(self, shape: tuple[int, ...]) -> Array:
        return self._torch.zeros(shape, dtype=self._torch.int64, device=self._device)

    def mul(self, a: Array, b: Array | float, out: Array) -> Array:
        return self._torch.mul(a, b, out=out)

    def add(self, a: Array, b: Array, out: Array) -> Array:
        return self._torch.add(a, b, out=out)

    def sub(self, a: Array, b: Array, out: Array) -> Array:
        return self._torch.sub(a, b, out=out)

    def div(self, a: Array, b: Array, out: Array) -> Array:
        if not (isinstance(b, self._torch.Tensor) and b.device.type == self._device.type):
            raise TypeError("divide by a tensor on the device: CUDA multiplies by a host scalar's reciprocal")
        return self._torch.div(a, b, out=out)

    def trunc(self, a: Array, out: Array) -> Array:
        return self._torch.trunc(a, out=out)

    def relu(self, a: Array, out: Array) -> Array:
        return self._torch.clamp_min(a, 0.0, out=out)

    def fill(self, a: Array, value: float) -> None:
        a.fill_(value)

    def int_products(self, a: Array, b: Array) -> Array:
        return self._torch.mm(a.t(), b).to(self._torch.int64)

    def iadd(self, acc: Array, part: Array) -> None:
        acc.add_(part)

    def to_host(self, a: Array) -> np.ndarray:
        return np.asarray(a.cpu().numpy())


Backend = NumpyBackend | TorchBackend
NUMPY = NumpyBackend()
