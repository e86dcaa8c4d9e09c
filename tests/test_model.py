"""The MLP and its normalizing wrapper against a numpy forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from circlefit.config import ModelConfig
from circlefit.data.normalize import Stats
from circlefit.model.network import MLP, CircleModel, build_model, fold_normalizer

STATS = Stats(mean=(0.5, -1.5, 130.0), std=(11.0, 9.0, 70.0), count=100, min_std=1e-6)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


NUMPY_ACT = {
    "relu": lambda v: np.maximum(v, 0.0),
    "gelu": lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0))),
    "silu": lambda v: v / (1.0 + np.exp(-v)),
    "tanh": np.tanh,
}


def model(hidden: tuple[int, ...] = (16, 8), activation: str = "relu", seed: int = 0) -> CircleModel:
    return build_model(ModelConfig(hidden=hidden, activation=activation), STATS, torch.Generator().manual_seed(seed))  # type: ignore[arg-type]


def numpy_forward(m: CircleModel, xy: np.ndarray, activation: str) -> np.ndarray:
    """The oracle: standardize with STATS, run the layers in float64, un-standardize."""
    h = (xy.astype(np.float64) - np.array(STATS.mean[:2])) / np.array(STATS.std[:2])
    linears = [layer for layer in m.net.layers if isinstance(layer, nn.Linear)]
    for i, lin in enumerate(linears):
        h = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(linears) - 1:
            h = NUMPY_ACT[activation](h)
    return (h * STATS.std[2] + STATS.mean[2])[:, 0]


def points(n: int = 257, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-25, 25, size=(n, 2))).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 257])
def test_output_shape_and_dtype(n: int) -> None:
    out = model()(torch.from_numpy(points(n)))
    assert out.shape == (n, 1) and out.dtype == torch.float32


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_forward_matches_numpy(activation: str) -> None:
    m = model(activation=activation)
    xy = points()
    with torch.no_grad():
        got = m(torch.from_numpy(xy))[:, 0].double().numpy()
    np.testing.assert_allclose(got, numpy_forward(m, xy, activation), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
@pytest.mark.parametrize("hidden", [(16, 8), (4,)])
def test_folded_normalizer_computes_the_same_function(activation: str, hidden: tuple[int, ...]) -> None:
    """What is exported: raw xy in, raw x² + y² out, the stats inside the first and last layers."""
    m = model(hidden, activation)
    folded = fold_normalizer(m)
    xy = points()
    with torch.no_grad():
        got = folded(torch.from_numpy(xy))[:, 0].double().numpy()
    np.testing.assert_allclose(got, numpy_forward(m, xy, activation), rtol=1e-5, atol=1e-4)
    assert not [b for b, _ in folded.named_buffers()]  # no elementwise normalizer left
    assert [type(x) for x in folded.layers] == [type(x) for x in m.net.layers]
    with torch.no_grad():  # the trained model is untouched
        np.testing.assert_array_equal(
            m(torch.from_numpy(xy))[:, 0].numpy(), model(hidden, activation)(torch.from_numpy(xy))[:, 0].numpy()
        )


ACTIVATIONS = [("relu", nn.ReLU), ("gelu", nn.GELU), ("silu", nn.SiLU), ("tanh", nn.Tanh)]


@pytest.mark.parametrize(("activation", "cls"), ACTIVATIONS)
def test_activation_param_builds_that_activation(activation: str, cls: type[nn.Module]) -> None:
    layers = list(model((4, 5, 6), activation).net.layers)
    kinds = [type(layer) for layer in layers]
    assert kinds == [nn.Linear, cls, nn.Linear, cls, nn.Linear, cls, nn.Linear]
    assert [(lin.in_features, lin.out_features) for lin in layers if isinstance(lin, nn.Linear)] == [
        (2, 4), (4, 5), (5, 6), (6, 1)
    ]  # fmt: skip


def test_relu_is_the_default() -> None:
    acts = [type(layer) for layer in MLP((8,)).layers if not isinstance(layer, nn.Linear)]
    assert acts == [nn.ReLU]


def test_wrapper_standardizes_with_its_buffers() -> None:
    m = model()
    buffers = dict(m.named_buffers())
    assert set(buffers) == {"xy_mean", "xy_std", "label_mean", "label_std"}
    assert not any(name.startswith(("xy_", "label_")) for name, _ in m.named_parameters())
    np.testing.assert_array_equal(buffers["xy_mean"].numpy(), np.float32(STATS.mean[:2]))
    np.testing.assert_array_equal(buffers["label_std"].numpy(), np.float32(STATS.std[2:]))
    xy = points(10)
    z = m.standardize(torch.from_numpy(xy)).numpy()
    np.testing.assert_allclose(z, (xy - np.float32(STATS.mean[:2])) / np.float32(STATS.std[:2]), rtol=1e-6)
    with torch.no_grad():  # forward = un-standardize(net(standardize(xy)))
        direct = m.net(torch.from_numpy(z)) * STATS.std[2] + STATS.mean[2]
        np.testing.assert_allclose(m(torch.from_numpy(xy)).numpy(), direct.numpy(), rtol=1e-6)
    label = torch.tensor([[STATS.mean[2] + 2 * STATS.std[2]]])
    assert m.standardize_label(label).item() == pytest.approx(2.0)


def test_buffers_travel_in_the_state_dict() -> None:
    m = model()
    fresh = CircleModel(ModelConfig(hidden=(16, 8), activation="relu"))  # identity stats
    assert fresh.xy_std.tolist() == [1.0, 1.0] and fresh.label_mean.tolist() == [0.0]
    fresh.load_state_dict(m.state_dict())
    xy = torch.from_numpy(points(5))
    with torch.no_grad():
        assert torch.equal(fresh(xy), m(xy))


def test_init_is_seeded_by_the_generator_only() -> None:
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    a, b, c = model(seed=3), model(seed=3), model(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG was not used
    sb, sc = b.state_dict(), c.state_dict()
    for name, ta in a.state_dict().items():
        assert torch.equal(ta, sb[name]), name
        if "net" in name:
            assert not torch.equal(ta, sc[name]), name


def test_init_follows_pytorch_default_bounds() -> None:
    m = model((64, 32))
    for lin in (layer for layer in m.net.layers if isinstance(layer, nn.Linear)):
        bound = 1 / math.sqrt(lin.in_features)
        for t in (lin.weight, lin.bias):
            assert t.abs().max().item() <= bound
            assert t.abs().max().item() > 0.8 * bound  # spread over the range, not all zero
