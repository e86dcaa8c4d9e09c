"""The stored float32 model evaluated in float64 with CPU-independent arithmetic (numpy, no torch).

Every number the pipeline writes about a model (training losses, metrics, plot values, probe
expectations) comes from here, so it is the same bits on every x86-64 CPU: elementwise float64
operations are correctly rounded everywhere, and every sum of products goes through
`circlefit.exact` (error-free, order-independent). The runtimes (PyTorch, onnxruntime) compute
the same function in float32; their distance from this reference is what the parity gate bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from circlefit.exact import matmul

__all__ = ["Weights", "activate", "features", "predict", "standardize"]


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
        idx = sorted({int(k.split(".")[2]) for k in state if k.startswith("net.layers.")})
        layers = tuple(
            (
                np.asarray(state[f"net.layers.{i}.weight"], np.float32),
                np.asarray(state[f"net.layers.{i}.bias"], np.float32),
            )
            for i in idx
        )
        bufs = {k: np.asarray(state[k], np.float32) for k in ("xy_mean", "xy_std", "label_mean", "label_std")}
        return cls(layers, activation, **bufs)

    @classmethod
    def of(cls, model: Any) -> Weights:
        """From a torch CircleModel (duck-typed: this module never imports torch for ReLU)."""
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        return cls.from_state(state, model.cfg.activation)

    def to_state(self) -> dict[str, np.ndarray]:
        """The CircleModel state dict (Linear layers sit at every other index of `net.layers`)."""
        state = {k: getattr(self, k) for k in ("xy_mean", "xy_std", "label_mean", "label_std")}
        for i, (w, b) in enumerate(self.layers):
            state[f"net.layers.{2 * i}.weight"] = w
            state[f"net.layers.{2 * i}.bias"] = b
        return state


def standardize(weights: Weights, xy: np.ndarray) -> np.ndarray:
    """(xy - mean) / std in float64, with the stored float32 stats."""
    xy64 = np.asarray(xy, dtype=np.float64)
    return (xy64 - weights.xy_mean.astype(np.float64)) / weights.xy_std.astype(np.float64)


def _affine(h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return matmul(h, w.astype(np.float64).T) + b.astype(np.float64)


def features(layers: tuple[tuple[np.ndarray, np.ndarray], ...], activation: str, z: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations [N, width] for standardized inputs z [N, 2]."""
    h = z
    for w, b in layers:
        h = activate(activation, _affine(h, w, b))
    return h


def predict(weights: Weights, xy: np.ndarray) -> np.ndarray:
    """Raw predictions [N] float64 for raw coordinates [N, 2]."""
    h = features(weights.layers[:-1], weights.activation, standardize(weights, xy))
    w, b = weights.layers[-1]
    out = _affine(h, w, b)[:, 0]
    return out * weights.label_std.astype(np.float64)[0] + weights.label_mean.astype(np.float64)[0]
