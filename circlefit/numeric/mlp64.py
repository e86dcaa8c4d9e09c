"""The MLP's stored float32 weights (`Weights`), evaluated in float64 with CPU-independent arithmetic (numpy).

Every number the pipeline writes about a model (training losses, metrics, plot values, probe
expectations) comes from here, so it is the same bits on every x86-64 CPU: elementwise float64
operations are correctly rounded everywhere, and every sum of products goes through
`circlefit.numeric.exact` (error-free, order-independent). The runtimes (PyTorch, onnxruntime)
compute the same function in float32; their distance from this float64 value is what the
export's parity gate bounds.

This module owns the weights' names: Linear layer i is `net.layers.{2i}` (weight [out, in],
bias [out]), as in the torch module's nn.Sequential of Linear and activation; the normalizer is
the four buffers of circlefit.data.normalize.BUFFERS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from circlefit.numeric.exact import matmul

__all__ = ["BLOCK_ROWS", "Weights", "activate", "affine", "features", "layer_keys", "predict", "standardize"]

# Rows per block of a forward pass: memory stays at one block's [rows, width] features at any n,
# and a block of a 256-wide layer stays in a core's cache while its sums are sliced.
BLOCK_ROWS = 1024
_BUFFERS = ("xy_mean", "xy_std", "label_mean", "label_std")


def layer_keys(i: int) -> tuple[str, str]:
    """The state-dict names of Linear layer `i`'s weight and bias."""
    return f"net.layers.{2 * i}.weight", f"net.layers.{2 * i}.bias"


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """The activation in float64. ReLU is exact; the others use torch's float64 kernels (see RELIABILITY.md)."""
    if name == "relu":
        return np.maximum(x, 0.0)
    import torch  # only for gelu/silu/tanh, whose vectorized transcendental kernels numpy lacks (erf) or varies

    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
        "tanh": torch.tanh,
    }
    return fns[name](torch.from_numpy(np.ascontiguousarray(x))).numpy()


@dataclass(frozen=True)
class Weights:
    """An MLP's layers as float32 arrays (W [out, in], b [out]) plus the normalizer, as stored."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    activation: str
    xy_mean: np.ndarray
    xy_std: np.ndarray
    label_mean: np.ndarray
    label_std: np.ndarray

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], activation: str) -> Weights:
        """From a CircleModel state dict (`net.layers.{i}.weight`/`.bias` and the four buffers)."""
        count = sum(1 for k in state if k.startswith("net.layers.")) // 2
        layers = tuple(tuple(np.asarray(state[k], np.float32) for k in layer_keys(i)) for i in range(count))
        bufs = {k: np.asarray(state[k], np.float32) for k in _BUFFERS}
        return cls(layers, activation, **bufs)  # type: ignore[arg-type]

    @classmethod
    def of(cls, model: Any) -> Weights:
        """From a torch CircleModel (duck-typed: this module never imports torch for ReLU)."""
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        return cls.from_state(state, model.cfg.activation)

    def to_state(self) -> dict[str, np.ndarray]:
        """The CircleModel state dict (Linear layers sit at every other index of `net.layers`)."""
        state = {k: getattr(self, k) for k in _BUFFERS}
        for i, (w, b) in enumerate(self.layers):
            state.update(zip(layer_keys(i), (w, b), strict=True))
        return state

    @staticmethod
    def shapes(hidden: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Every tensor's shape in the state dict of a 2 → hidden… → 1 MLP."""
        shapes: dict[str, tuple[int, ...]] = {"xy_mean": (2,), "xy_std": (2,), "label_mean": (1,), "label_std": (1,)}
        widths = (2, *hidden, 1)
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            w, b = layer_keys(i)
            shapes[w], shapes[b] = (n_out, n_in), (n_out,)
        return shapes


def standardize(weights: Weights, xy: np.ndarray) -> np.ndarray:
    """(xy - mean) / std in float64, with the stored float32 stats."""
    xy64 = np.asarray(xy, dtype=np.float64)
    return (xy64 - weights.xy_mean.astype(np.float64)) / weights.xy_std.astype(np.float64)


def affine(h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """h wᵀ + b in float64 for float32 layer weights w [out, in], b [out]: a Linear layer, the same bits on any CPU."""
    return matmul(h, w.astype(np.float64).T) + b.astype(np.float64)


def features(layers: tuple[tuple[np.ndarray, np.ndarray], ...], activation: str, z: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations [N, width] for standardized inputs z [N, 2]."""
    h = z
    for w, b in layers:
        h = activate(activation, affine(h, w, b))
    return h


def _predict_block(weights: Weights, xy: np.ndarray) -> np.ndarray:
    h = features(weights.layers[:-1], weights.activation, standardize(weights, xy))
    w, b = weights.layers[-1]
    out = affine(h, w, b)[:, 0]
    return out * weights.label_std.astype(np.float64)[0] + weights.label_mean.astype(np.float64)[0]


def predict(weights: Weights, xy: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Raw predictions [N] float64 for raw coordinates [N, 2], `block_rows` rows at a time (memory stays flat).

    Each row's sums are exact before one rounding, whatever else is in its block, so any
    `block_rows` gives the same bits.
    """
    out = np.empty(len(xy), dtype=np.float64)
    for start in range(0, len(xy), block_rows):
        out[start : start + block_rows] = _predict_block(weights, xy[start : start + block_rows])
    return out
