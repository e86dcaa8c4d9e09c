"""The ReLU MLP and the wrapper that bakes the normalizer in. Pure: no IO, no device."""

from __future__ import annotations

import torch
from torch import nn

from circlefit.config import ModelConfig
from circlefit.normalize import Stats

__all__ = ["MLP", "CircleModel", "build_model"]

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
        mean = stats.mean if stats else (0.0, 0.0, 0.0)
        std = stats.std if stats else (1.0, 1.0, 1.0)
        self.register_buffer("xy_mean", torch.tensor(mean[:2], dtype=torch.float32))
        self.register_buffer("xy_std", torch.tensor(std[:2], dtype=torch.float32))
        self.register_buffer("label_mean", torch.tensor(mean[2:], dtype=torch.float32))
        self.register_buffer("label_std", torch.tensor(std[2:], dtype=torch.float32))

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
