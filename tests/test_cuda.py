"""The gradient method on CUDA: the captured step, its fallback, precisions and determinism.

Every test here needs an NVIDIA GPU and is skipped without one (`pytest -m cuda` selects them).
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from circlefit import config
from circlefit.config import ModelConfig, TrainConfig, from_mapping, parse_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.device import CUBLAS_WORKSPACE, DeviceError, configure
from circlefit.evaluate import regression_metrics
from circlefit.numeric.mlp64 import predict
from circlefit.train import Rows, train
from circlefit.train.fast_step import FastStep
from circlefit.train.gradient import _optimizer, _schedule

from conftest import REPO, repo_params

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]
CUDA = torch.device("cuda")
PARAMS = parse_params((REPO / "params.yaml").read_text())


def _tcfg(**over: object) -> TrainConfig:
    """The gradient method on CUDA; keys of train.gradient given flat."""
    raw = repo_params()["train"] | {"method": "gradient", "device": "cuda"}
    raw["gradient"] = raw["gradient"] | {"epochs": 60, "lbfgs_steps": 40, "eval_every": 10} | over
    return from_mapping(TrainConfig, raw, "test", "train")


def _run(cfg: TrainConfig, model: ModelConfig, stats, ds):
    return train(cfg, model, stats, Rows(ds.train, ds.val), "cuda")


def _data(n: int):
    ds = generate(config.replace(PARAMS.data, n=n), load_tutorial(REPO / "data/tutorial36.csv"))
    return ds, fit_stats(ds.train, PARAMS.normalize.min_std)


def _rmse(result, ds) -> float:
    return regression_metrics(predict(result.weights, ds.test[:, :2]), ds.test)["rmse"]


@pytest.fixture(autouse=True)
def _cuda_settings():
    configure("cuda", PARAMS.train.threads, "fp32")
    yield
    configure("cuda", PARAMS.train.threads, "fp32")


@pytest.fixture(scope="module")
def default_runs():
    """The gradient method's default params on CUDA: eager loop, graph, graph again (one run each, shared)."""
    ds, stats = _data(PARAMS.data.n)
    cfg = config.replace(PARAMS.train, method="gradient", device="cuda")
    steps = {
        mode: config.replace(cfg, gradient=config.replace(cfg.gradient, cuda_graph=mode))
        for mode in ("never", "always")
    }
    runs = {
        name: _run(steps[mode], PARAMS.model, stats, ds)
        for name, mode in (("eager", "never"), ("graph", "always"), ("graph2", "always"))
    }
    return ds, runs


def test_default_params_capture_the_step_and_meet_the_accuracy_bar(default_runs):
    ds, runs = default_runs
    graph = runs["graph"]
    assert graph.summary["phase1_step"] == "graph"
    assert graph.summary["device"] == "cuda"
    const = regression_metrics(ds.test[:, 2] * 0 + float(ds.train[:, 2].mean()), ds.test)["rmse"]
    assert _rmse(graph, ds) < const / 100  # CPU reaches ≈ const / 480 with these params


def test_graph_and_eager_reach_the_same_rmse_within_noise(default_runs):
    ds, runs = default_runs
    eager, graph = runs["eager"], runs["graph"]
    first_e, first_g = eager.curve[0], graph.curve[0]  # 10 steps in: only rounding can differ yet
    assert first_g["train_loss"] == pytest.approx(first_e["train_loss"], rel=1e-4)
    assert [r["lr"] for r in graph.curve] == [r["lr"] for r in eager.curve]
    assert _rmse(graph, ds) == pytest.approx(_rmse(eager, ds), rel=0.25)


def test_same_params_on_the_same_gpu_give_the_same_weights(default_runs):
    _, runs = default_runs
    a, b = runs["graph"], runs["graph2"]
    assert a.curve == b.curve
    for (wa, ba), (wb, bb) in zip(a.weights.layers, b.weights.layers, strict=True):
        assert (wa == wb).all() and (ba == bb).all()


def test_eager_cuda_is_repeatable_for_mini_batches_too():
    ds, stats = _data(2048)
    cfg, mcfg = (
        _tcfg(batch_size=256, epochs=6, eval_every=2, lbfgs_steps=0),
        ModelConfig(hidden=(32,), activation="relu"),
    )
    a, b = _run(cfg, mcfg, stats, ds), _run(cfg, mcfg, stats, ds)
    assert a.summary["phase1_step"] == "eager"  # auto: mini-batches are not captured
    assert a.curve == b.curve


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_other_precisions_train_in_a_graph(precision):
    ds, stats = _data(4096)
    cfg, mcfg = _tcfg(precision=precision, epochs=200, lbfgs_steps=0), ModelConfig(hidden=(64, 64), activation="relu")
    result = _run(cfg, mcfg, stats, ds)
    assert result.summary["phase1_step"] == "graph"
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"] / 10


def test_cuda_graph_always_refuses_mini_batches():
    ds, stats = _data(1024)
    cfg = _tcfg(cuda_graph="always", batch_size=64)
    with pytest.raises(DeviceError, match=r"train.gradient.cuda_graph is 'always' but train.gradient.batch_size 64"):
        _run(cfg, ModelConfig(hidden=(16,), activation="relu"), stats, ds)


def _syncing_step(required: bool) -> FastStep:
    """A step whose loss function reads a value on the host: legal eagerly, illegal in a capture."""
    ds, _ = _data(1024)
    cfg = _tcfg(epochs=20).gradient
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).to(CUDA)
    x = torch.from_numpy(ds.train[:, :2]).to(CUDA)
    y = torch.from_numpy(ds.train[:, 2:]).to(CUDA) / 100

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(net(xb), yb)
        assert float(loss) >= 0  # a host sync
        return loss

    return FastStep(
        net, loss_fn, x, y, lambda ps, cap: _optimizer(cfg, iter(ps), cap), lambda o: _schedule(cfg, o, 20),
        20, 10, capture=True, required=required,
    )  # fmt: skip


def test_failed_capture_falls_back_to_the_eager_step_with_a_warning(caplog):
    step = _syncing_step(required=False)
    with caplog.at_level(logging.WARNING, logger="circlefit.train.fast_step"):
        losses = [float(step.step()) for _ in range(10)]
    assert not step.captured
    assert "capture of the training step failed" in caplog.text
    assert losses[-1] < losses[0]
    drained, lrs = step.drain()
    assert drained.tolist() == pytest.approx(losses) and len(lrs) == 10


def test_failed_capture_is_an_error_when_the_graph_is_required():
    step = _syncing_step(required=True)
    with pytest.raises(DeviceError, match=r"train\.gradient\.cuda_graph is 'always' but capturing the step failed"):
        for _ in range(10):
            step.step()


def test_configure_turns_on_deterministic_cuda():
    configure("cuda", 2, "tf32")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.matmul.allow_tf32
    configure("cuda", 2, "fp32")
    assert not torch.backends.cuda.matmul.allow_tf32
