"""The CUDA-graph step's code path, run eagerly on CPU against the plain eager training loop.

Graph capture itself is CUDA-only (tests/test_cuda.py); everything it captures — static
buffers, the flat parameter, the device schedule table, the loss window — runs here: the
tests make the gradient method pick the "static" step (what a failed capture falls back to).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from circlefit import config
from circlefit.config import ConfigError, GradientConfig, ModelConfig, TrainConfig, from_mapping, parse_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.device import DeviceError, configure
from circlefit.errors import TrainingDiverged
from circlefit.model.network import MLP, to_module
from circlefit.model.weights import load_model, save_weights
from circlefit.train import Rows, TrainResult, gradient, train
from circlefit.train.fast_step import FastStep, StepMode, choose_mode, flatten_params, graph_blockers, schedule_table
from circlefit.train.gradient import _optimizer, _schedule

from conftest import REPO, repo_params

CPU = torch.device("cpu")


def _tcfg(**over: object) -> TrainConfig:
    """The gradient method, small; keys of train.gradient given flat."""
    raw = repo_params()["train"] | {"method": "gradient", "threads": 1}
    raw["gradient"] = raw["gradient"] | {"epochs": 60, "lbfgs_steps": 0, "eval_every": 10} | over
    return from_mapping(TrainConfig, raw, "test", "train")


def _cfg(**over: object) -> GradientConfig:
    return _tcfg(**over).gradient


def _train(cfg, mcfg, ds, stats, mode: StepMode, monkeypatch: pytest.MonkeyPatch) -> TrainResult:
    """Train with phase 1 run as `mode`: "eager" (the loop) or "static" (FastStep, uncaptured)."""
    monkeypatch.setattr(gradient, "choose_mode", lambda *args, **kw: mode)
    return train(cfg, mcfg, stats, Rows(ds.train, ds.val))


@pytest.fixture(scope="module")
def small_data():
    p = parse_params((REPO / "params.yaml").read_text())
    ds = generate(config.replace(p.data, n=1024), load_tutorial(REPO / "data/tutorial36.csv"))
    return ds, fit_stats(ds.train, 1e-6)


@pytest.mark.parametrize(
    ("optimizer", "schedule"), [("adam", "onecycle"), ("adamw", "cosine"), ("adam", "constant")]
)  # fmt: skip
def test_schedule_table_is_what_the_live_scheduler_sets(optimizer, schedule):
    cfg = _cfg(optimizer=optimizer, schedule=schedule, weight_decay=0.01)
    net = MLP((8,))
    opt = _optimizer(cfg, net.parameters(), capturable=False)
    sched = _schedule(cfg, opt, cfg.epochs)
    live = []
    for _ in range(cfg.epochs):
        live.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        net(torch.ones(4, 2)).sum().backward()
        opt.step()
        if sched is not None:
            sched.step()
    live.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
    table = schedule_table(lambda ps, cap: _optimizer(cfg, iter(ps), cap), lambda o: _schedule(cfg, o, 60), 60)
    assert table == live  # exact floats, including OneCycle's cycling beta1
    if schedule == "onecycle":
        assert len({b for _, b in table}) > 10


def test_flat_parameters_keep_values_grads_and_the_adam_update_bitwise():
    torch.manual_seed(0)
    a, b = MLP((16, 8)), MLP((16, 8))
    b.load_state_dict(a.state_dict())
    flat = flatten_params(list(b.parameters()))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert pb.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert (pb.data_ptr() - flat.data_ptr()) % 256 == 0  # aligned like an allocation of its own
    opt_a = torch.optim.Adam(a.parameters(), lr=0.01, foreach=False)
    opt_b = torch.optim.Adam([flat], lr=0.01, foreach=False)
    x = torch.randn(64, 2)
    for _ in range(5):
        opt_a.zero_grad(set_to_none=True)
        flat.grad.zero_()  # type: ignore[union-attr]
        a(x).square().mean().backward()
        b(x).square().mean().backward()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa.grad, pb.grad)
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)  # the flat update is the same elementwise arithmetic
    assert flat.count_nonzero() == sum(p.count_nonzero() for p in b.parameters())  # padding stayed 0


@pytest.mark.parametrize("over", [{}, {"optimizer": "adamw", "schedule": "cosine", "weight_decay": 0.01}])
def test_static_step_matches_the_eager_loop(small_data, over, monkeypatch):
    ds, stats = small_data
    cfg, mcfg = _tcfg(**over), ModelConfig(hidden=(32,), activation="relu")
    eager = _train(cfg, mcfg, ds, stats, "eager", monkeypatch)
    static = _train(cfg, mcfg, ds, stats, "static", monkeypatch)
    assert (eager.summary["phase1_step"], static.summary["phase1_step"]) == ("eager", "static")
    assert len(eager.curve) == len(static.curve) == 6
    for e, s in zip(eager.curve, static.curve, strict=True):
        assert (e["step"], e["epoch"], e["phase"], e["lr"]) == (s["step"], s["epoch"], s["phase"], s["lr"])
        # Only rounding differs: the captured update reads lr and beta1 as float32 tensors.
        assert s["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5)
        assert s["val_loss"] == pytest.approx(e["val_loss"], rel=1e-5)
    for (we, be), (ws, bs) in zip(eager.weights.layers, static.weights.layers, strict=True):
        np.testing.assert_allclose(ws, we, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bs, be, rtol=1e-4, atol=1e-5)


def test_static_step_runs_bf16_autocast_on_cpu(small_data, monkeypatch):
    ds, stats = small_data
    cfg, mcfg = _tcfg(precision="bf16", epochs=20), ModelConfig(hidden=(32,), activation="relu")
    eager = _train(cfg, mcfg, ds, stats, "eager", monkeypatch)
    static = _train(cfg, mcfg, ds, stats, "static", monkeypatch)
    assert static.curve[-1]["val_loss"] == pytest.approx(eager.curve[-1]["val_loss"], rel=1e-2)
    assert static.curve[-1]["val_loss"] < static.curve[0]["val_loss"]


def test_static_step_names_the_same_diverging_step_as_the_eager_loop(small_data, monkeypatch):
    ds, stats = small_data
    # AdamW's decay factor 1 - lr * weight_decay = -2 doubles the weights each step: inf after ~30.
    cfg = _tcfg(optimizer="adamw", lr=0.01, weight_decay=300.0, schedule="constant")
    messages = []
    for mode in ("eager", "static"):
        with pytest.raises(TrainingDiverged) as err:
            _train(cfg, ModelConfig(hidden=(32,), activation="relu"), ds, stats, mode, monkeypatch)  # type: ignore[arg-type]
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    step = int(re.search(r"at step (\d+) ", messages[0]).group(1))  # type: ignore[union-attr]
    every = cfg.gradient.eval_every
    assert step > 2 * every and step % every not in (0, 1)  # mid-window, several windows in


def test_default_params_choose_the_eager_loop_on_cpu():
    params = parse_params((REPO / "params.yaml").read_text())
    assert params.train.gradient.cuda_graph == "auto"
    assert choose_mode(params.train.gradient, CPU, full_batch=True) == "eager"
    assert choose_mode(_cfg(cuda_graph="never"), torch.device("cuda"), full_batch=True) == "eager"
    assert choose_mode(_cfg(), torch.device("cuda"), full_batch=True) == "graph"
    assert choose_mode(_cfg(), torch.device("cuda"), full_batch=False) == "eager"
    assert choose_mode(_cfg(optimizer="sgd"), torch.device("cuda"), full_batch=True) == "eager"


@pytest.mark.parametrize(
    ("over", "full_batch", "needle"),
    [
        ({}, True, "the device is cpu"),
        ({"batch_size": 64}, False, "train.gradient.batch_size 64 makes mini-batches"),
        ({"optimizer": "radam"}, True, "train.gradient.optimizer is radam"),
    ],
)
def test_cuda_graph_always_explains_why_it_cannot(over, full_batch, needle):
    cfg = _cfg(cuda_graph="always", **over)
    with pytest.raises(DeviceError, match=r"^my.yaml: train.gradient.cuda_graph is 'always' but .*" + needle):
        choose_mode(cfg, CPU, full_batch, source="my.yaml")


def test_what_the_static_step_needs_short_of_cuda():
    assert graph_blockers(_cfg(), CPU, True) == ["the device is cpu (CUDA graphs need CUDA)"]
    cuda = torch.device("cuda")  # a device object: no GPU needed to ask what else blocks a graph
    assert graph_blockers(_cfg(), cuda, True) == []
    sgd = graph_blockers(_cfg(optimizer="sgd"), cuda, True)
    assert len(sgd) == 1 and sgd[0].startswith("train.gradient.optimizer is sgd")


def test_cuda_graph_param_is_validated():
    raw = repo_params()
    raw["train"]["gradient"]["cuda_graph"] = "on"
    want = r"^params.yaml: train.gradient.cuda_graph must be one of 'auto', 'always' or 'never'; got the string 'on'$"
    with pytest.raises(ConfigError, match=want):
        from_mapping(type(parse_params((REPO / "params.yaml").read_text())), raw)


def test_configure_leaves_cpu_determinism_settings_alone():
    before = torch.are_deterministic_algorithms_enabled()
    configure("cpu", torch.get_num_threads(), "fp32")
    assert torch.are_deterministic_algorithms_enabled() == before


def test_after_the_static_step_lbfgs_runs_and_the_model_saves_and_loads(small_data, tmp_path, monkeypatch):
    ds, stats = small_data
    cfg, mcfg = _tcfg(epochs=20, lbfgs_steps=10), ModelConfig(hidden=(16,), activation="relu")
    result = _train(cfg, mcfg, ds, stats, "static", monkeypatch)
    assert [r["phase"] for r in result.curve][-1] == "lbfgs"
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"]
    save_weights(result.weights, tmp_path / "w.safetensors")
    loaded = load_model(tmp_path / "w.safetensors")
    for (name, a), b in zip(to_module(result.weights).state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_closing_the_step_gives_each_parameter_its_own_storage_back():
    torch.manual_seed(0)
    net = MLP((16,))
    x, y = torch.randn(32, 2), torch.randn(32, 1)
    cfg = _cfg(epochs=4)
    fast = FastStep(
        net, lambda a, b: torch.nn.functional.mse_loss(net(a), b), x, y,
        lambda ps, cap: _optimizer(cfg, iter(ps), cap), lambda o: _schedule(cfg, o, 4), 4, 4, capture=False,
    )  # fmt: skip
    for _ in range(4):
        fast.step()
    values = [p.detach().clone() for p in net.parameters()]
    assert len({p.untyped_storage().data_ptr() for p in net.parameters()}) == 1  # views of the flat parameter
    fast.close()
    storages = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert len(storages) == len(values)  # no longer views of one buffer
    assert (
        all(torch.equal(p, v) for p, v in zip(net.parameters(), values, strict=True))
        and net.layers[0].weight.grad is None
    )
