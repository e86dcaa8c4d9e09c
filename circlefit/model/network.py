"""The ReLU MLP and the wrapper that bakes the normalizer in. Pure: no IO, no device."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from circlefit.config import ModelConfig
from circlefit.data.normalize import Stats
from circlefit.numeric.mlp64 import Weights

__all__ = ["MLP", "CircleModel", "build_model", "fold_normalizer", "to_module"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """2 → hidden… → 1, with the configured activation (ReLU by default) between layers."""

    def __init__(self, hidden: tuple[int, ...], activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class CircleModel(nn.Module):
    """Raw (x, y) [N, 2] → raw x² + y² [N, 1]; standardization lives in buffers.

    The same module trains (on `net` with standardized tensors), evaluates and exports.
    """

    xy_mean: torch.Tensor
    xy_std: torch.Tensor
    label_mean: torch.Tensor
    label_std: torch.Tensor

    def __init__(self, cfg: ModelConfig, stats: Stats | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = MLP(cfg.hidden, cfg.activation)
        identity = Stats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 0, 0.0)
        for name, value in (stats or identity).buffers().items():
            self.register_buffer(name, torch.from_numpy(value))

    def standardize(self, xy: torch.Tensor) -> torch.Tensor:
        return (xy - self.xy_mean) / self.xy_std

    def standardize_label(self, label: torch.Tensor) -> torch.Tensor:
        return (label - self.label_mean) / self.label_std

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(xy)) * self.label_std + self.label_mean


def build_model(cfg: ModelConfig, stats: Stats | None, generator: torch.Generator) -> CircleModel:
    """A freshly initialized model; weights drawn from `generator`, not the global RNG."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from (and advances) the global RNG
        model = CircleModel(cfg, stats)
    for module in model.net.modules():
        if isinstance(module, nn.Linear):
            # PyTorch's default Linear init, drawn from our generator (kaiming_uniform a=√5).
            bound = 1.0 / module.in_features**0.5
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
    return model


def fold_normalizer(model: CircleModel) -> MLP:
    """The same function as `model` with the normalizer folded into the first and last Linear layers.

    Raw (x, y) → raw x² + y² as `model`, but with no elementwise ops around the network:
    W₀' = W₀ / σ_xy, b₀' = b₀ − W₀ (μ_xy / σ_xy) and W_L' = σ_y W_L, b_L' = σ_y b_L + μ_y (computed
    in float64, stored as float32). Only the affine first and last layers change, so it holds for
    every activation. This is what is exported: in onnxruntime the four [N, 2] / [N, 1] elementwise
    ops are a sizeable share of each chunked call (measured: BENCHMARKS.md, "Export variants").
    Outputs differ from `model`'s by float32 rounding; the export's parity check bounds that.
    """
    folded = copy.deepcopy(model.net).to("cpu").eval()
    linears = [m for m in folded.layers if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    mu, sd = model.xy_mean.detach().double().cpu(), model.xy_std.detach().double().cpu()
    lm, ls = model.label_mean.detach().double().cpu(), model.label_std.detach().double().cpu()
    with torch.no_grad():
        w, b = first.weight.double(), first.bias.double()
        first.weight.copy_(w / sd)
        shift = mu / sd  # W₀ (μ/σ) term by term, not a BLAS matvec: the same bits on any CPU
        first.bias.copy_(b - sum((w[:, i] * shift[i] for i in range(1, w.shape[1])), w[:, 0] * shift[0]))
        w, b = last.weight.double(), last.bias.double()
        last.weight.copy_(w * ls)
        last.bias.copy_(b * ls + lm)
    return folded


def to_module(weights: Weights) -> CircleModel:
    """The torch CircleModel (eval mode, on the CPU) holding exactly `weights`."""
    hidden = tuple(int(w.shape[0]) for w, _ in weights.layers[:-1])
    model = CircleModel(ModelConfig(hidden=hidden, activation=weights.activation))  # type: ignore[arg-type]
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.to_state().items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
