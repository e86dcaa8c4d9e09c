"""The CUDA-graph step's code path, run eagerly on CPU against the plain eager training loop.

Graph capture itself is CUDA-only (tests/test_cuda.py); everything it captures — static
buffers, the flat parameter, the device schedule table, the loss window — runs here.
"""

from __future__ import annotations

import re

import pytest
import torch

from circlefit import config
from circlefit.checkpoint import load_model, save_model
from circlefit.config import ConfigError, ModelConfig, TrainConfig, from_mapping, parse_params
from circlefit.data import generate, load_tutorial
from circlefit.device import DeviceError, configure
from circlefit.fast_step import choose_mode, flatten_params, schedule_table
from circlefit.model import MLP
from circlefit.normalize import fit_stats
from circlefit.train import TrainingDiverged, _optimizer, _schedule, train

from conftest import REPO, repo_params

CPU = torch.device("cpu")


def _cfg(**over: object) -> TrainConfig:
    raw = (
        repo_params()["train"]
        | {"method": "gradient", "epochs": 60, "lbfgs_steps": 0, "eval_every": 10, "threads": 1}
        | over
    )
    return from_mapping(TrainConfig, raw, "test", "train")


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
def test_static_step_matches_the_eager_loop(small_data, over):
    ds, stats = small_data
    cfg, mcfg = _cfg(**over), ModelConfig((32,), "relu")
    eager = train(cfg, mcfg, stats, ds.train, ds.val, CPU, step_mode="eager")
    static = train(cfg, mcfg, stats, ds.train, ds.val, CPU, step_mode="static")
    assert (eager.summary["phase1_step"], static.summary["phase1_step"]) == ("eager", "static")
    assert len(eager.curve) == len(static.curve) == 6
    for e, s in zip(eager.curve, static.curve, strict=True):
        assert (e["step"], e["epoch"], e["phase"], e["lr"]) == (s["step"], s["epoch"], s["phase"], s["lr"])
        # Only rounding differs: the captured update reads lr and beta1 as float32 tensors.
        assert s["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5)
        assert s["val_loss"] == pytest.approx(e["val_loss"], rel=1e-5)
    for (name, we), ws in zip(eager.model.state_dict().items(), static.model.state_dict().values(), strict=True):
        assert torch.allclose(we, ws, rtol=1e-4, atol=1e-5), name


def test_static_step_runs_bf16_autocast_on_cpu(small_data):
    ds, stats = small_data
    cfg, mcfg = _cfg(precision="bf16", epochs=20), ModelConfig((32,), "relu")
    eager = train(cfg, mcfg, stats, ds.train, ds.val, CPU, step_mode="eager")
    static = train(cfg, mcfg, stats, ds.train, ds.val, CPU, step_mode="static")
    assert static.curve[-1]["val_loss"] == pytest.approx(eager.curve[-1]["val_loss"], rel=1e-2)
    assert static.curve[-1]["val_loss"] < static.curve[0]["val_loss"]


def test_static_step_names_the_same_diverging_step_as_the_eager_loop(small_data):
    ds, stats = small_data
    # AdamW's decay factor 1 - lr * weight_decay = -2 doubles the weights each step: inf after ~30.
    cfg = _cfg(optimizer="adamw", lr=0.01, weight_decay=300.0, schedule="constant")
    messages = []
    for mode in ("eager", "static"):
        with pytest.raises(TrainingDiverged) as err:
            train(cfg, ModelConfig((32,), "relu"), stats, ds.train, ds.val, CPU, step_mode=mode)  # type: ignore[arg-type]
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    step = int(re.search(r"at step (\d+) ", messages[0]).group(1))  # type: ignore[union-attr]
    assert step > 2 * cfg.eval_every and step % cfg.eval_every not in (0, 1)  # mid-window, several windows in


def test_default_params_choose_the_eager_loop_on_cpu():
    params = parse_params((REPO / "params.yaml").read_text())
    assert params.train.cuda_graph == "auto"
    assert choose_mode(params.train, CPU, full_batch=True) == "eager"
    assert choose_mode(_cfg(cuda_graph="never"), torch.device("cuda"), full_batch=True) == "eager"
    assert choose_mode(_cfg(), torch.device("cuda"), full_batch=True) == "graph"
    assert choose_mode(_cfg(), torch.device("cuda"), full_batch=False) == "eager"
    assert choose_mode(_cfg(optimizer="sgd"), torch.device("cuda"), full_batch=True) == "eager"


@pytest.mark.parametrize(
    ("over", "full_batch", "needle"),
    [
        ({}, True, "the device is cpu"),
        ({"batch_size": 64}, False, "train.batch_size 64 makes mini-batches"),
        ({"optimizer": "radam"}, True, "train.optimizer is radam"),
    ],
)
def test_cuda_graph_always_explains_why_it_cannot(over, full_batch, needle):
    cfg = _cfg(cuda_graph="always", **over)
    with pytest.raises(DeviceError, match=r"^my.yaml: train.cuda_graph is 'always' but .*" + needle):
        choose_mode(cfg, CPU, full_batch, source="my.yaml")


def test_forced_modes_are_checked():
    with pytest.raises(ValueError, match="'graph' is not possible: the device is cpu"):
        choose_mode(_cfg(), CPU, True, override="graph")
    with pytest.raises(ValueError, match=r"'static' is not possible: train\.optimizer is sgd"):
        choose_mode(_cfg(optimizer="sgd"), CPU, True, override="static")
    assert choose_mode(_cfg(cuda_graph="always"), CPU, True, override="static") == "static"


def test_cuda_graph_param_is_validated():
    raw = repo_params()
    raw["train"]["cuda_graph"] = "on"
    want = r"^params.yaml: train.cuda_graph must be one of 'auto', 'always' or 'never'; got the string 'on'$"
    with pytest.raises(ConfigError, match=want):
        from_mapping(type(parse_params((REPO / "params.yaml").read_text())), raw)


def test_configure_leaves_cpu_determinism_settings_alone():
    before = torch.are_deterministic_algorithms_enabled()
    configure(CPU, torch.get_num_threads(), "fp32")
    assert torch.are_deterministic_algorithms_enabled() == before


def test_after_the_static_step_lbfgs_runs_and_the_model_saves_and_loads(small_data, tmp_path):
    ds, stats = small_data
    cfg, mcfg = _cfg(epochs=20, lbfgs_steps=10), ModelConfig((16,), "relu")
    result = train(cfg, mcfg, stats, ds.train, ds.val, CPU, step_mode="static")
    assert [r["phase"] for r in result.curve][-1] == "lbfgs"
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"]
    storages = {p.untyped_storage().data_ptr() for p in result.model.parameters()}
    assert len(storages) == len(list(result.model.parameters()))  # no longer views of one buffer
    save_model(result.model, tmp_path / "w.safetensors")  # safetensors refuses shared storage
    loaded = load_model(tmp_path / "w.safetensors")
    for (name, a), b in zip(result.model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
