"""Training on tiny problems: it learns, it repeats itself bit for bit, and it fails loudly."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from circlefit import config
from circlefit.config import DataConfig, ModelConfig, TrainConfig, from_mapping
from circlefit.data.generate import Dataset, generate, load_tutorial
from circlefit.data.normalize import Stats, fit_stats
from circlefit.device import DeviceError, resolve_device
from circlefit.errors import TrainingDiverged
from circlefit.model.network import CircleModel, build_model, to_module
from circlefit.model.weights import save_weights
from circlefit.train import Rows, TrainResult, train
from circlefit.train.progress import Progress

from conftest import REPO, merge, repo_params

MODEL = ModelConfig(hidden=(32,), activation="relu")
# The gradient method (tests/test_lstsq.py covers lstsq), a small, fast run: constant lr so the lr
# in messages is known; L-BFGS off unless asked.
BASE = {
    "method": "gradient",
    "gradient": {"epochs": 60, "lbfgs_steps": 0, "eval_every": 10, "schedule": "constant", "lr": 0.03, "batch_size": 0},
}


def tcfg(**over: Any) -> TrainConfig:
    """train with `over`; keys of train.gradient may be given flat."""
    grad = {k: over.pop(k) for k in list(over) if k in TrainConfig.model_fields["gradient"].annotation.model_fields}
    return from_mapping(
        TrainConfig, merge(merge(repo_params()["train"], BASE), {**over, "gradient": grad}), "test", "train"
    )


def regrad(cfg: TrainConfig, **over: Any) -> TrainConfig:
    """`cfg` with train.gradient keys replaced."""
    return config.replace(cfg, gradient=config.replace(cfg.gradient, **over))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: these problems are tiny and the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    cfg = from_mapping(DataConfig, merge(repo_params()["data"], {"n": 600}), "test", "data")
    return generate(cfg, load_tutorial(REPO / "data" / "tutorial36.csv"))


@pytest.fixture(scope="module")
def stats(ds: Dataset) -> Stats:
    return fit_stats(ds.train, 1e-6)


def run(ds: Dataset, stats: Stats, cfg: TrainConfig, model: ModelConfig = MODEL, **kw: Any) -> TrainResult:
    return train(cfg, model, stats, Rows(ds.train, ds.val), **kw)


def module(result: TrainResult) -> CircleModel:
    return to_module(result.weights)


def val_loss(model: CircleModel, rows: np.ndarray) -> float:
    """The oracle for the curve's val_loss: standardized MSE, recomputed from scratch."""
    t = torch.from_numpy(rows)
    with torch.no_grad():
        pred = model.net(model.standardize(t[:, :2]))
        return float(nn.functional.mse_loss(pred, model.standardize_label(t[:, 2:])))


def weights_bytes(result: TrainResult, path: Path) -> bytes:
    save_weights(result.weights, path)
    return path.read_bytes()


# --- it learns -------------------------------------------------------------------------------


def test_loss_goes_down_and_beats_the_mean(ds: Dataset, stats: Stats) -> None:
    result = run(ds, stats, tcfg(epochs=60))
    curve = result.curve
    assert [r["step"] for r in curve] == list(range(10, 61, 10))
    assert curve[-1]["val_loss"] < curve[0]["val_loss"] / 10
    assert result.summary["best_val_loss"] < 0.03  # standardized: ~1.0 is the constant mean
    pred = module(result)(torch.from_numpy(ds.val[:, :2])).detach().numpy()[:, 0]
    rmse = float(np.sqrt(np.mean((pred - ds.val[:, 2]) ** 2)))
    assert rmse < 0.2 * float(ds.val[:, 2].std())


def test_curve_rows_and_callback(ds: Dataset, stats: Stats) -> None:
    seen: list[dict[str, Any]] = []
    result = run(ds, stats, tcfg(epochs=25, eval_every=10, lbfgs_steps=5), on_eval=seen.append)
    assert seen == result.curve
    assert [(r["phase"], r["step"], r["epoch"]) for r in result.curve] == [
        ("first_order", 10, 10), ("first_order", 20, 20), ("first_order", 25, 25), ("lbfgs", 30, 25)
    ]  # fmt: skip
    for row in result.curve:
        assert set(row) == {"step", "epoch", "phase", "lr", "train_loss", "val_loss"}
        assert all(math.isfinite(row[k]) for k in ("lr", "train_loss", "val_loss"))


def test_summary_is_complete_and_json_safe(ds: Dataset, stats: Stats) -> None:
    result = run(ds, stats, tcfg(epochs=20, lbfgs_steps=10))
    s = result.summary
    assert s["steps"] == 30 and s["train_rows"] == ds.train.shape[0] and s["device"] == "cpu"
    assert s["parameters"] == sum(p.numel() for p in module(result).net.parameters()) == 2 * 32 + 32 + 32 + 1
    assert s["threads"] == torch.get_num_threads() and s["torch"] == torch.__version__
    assert s["final_val_loss"] == result.curve[-1]["val_loss"]
    json.dumps(s, allow_nan=False)
    assert result.timing["wall_s"] > 0


def test_validation_in_chunks_matches_one_pass(ds: Dataset, stats: Stats, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large validation sets are evaluated in EVAL_ROWS chunks (bounded memory), same losses."""
    import circlefit.train.gradient as gradient

    whole = run(ds, stats, tcfg(epochs=30, lbfgs_steps=10))
    assert ds.val.shape[0] > 7
    monkeypatch.setattr(gradient, "EVAL_ROWS", 7)  # many chunks, the last one short
    chunked = run(ds, stats, tcfg(epochs=30, lbfgs_steps=10))
    a = np.array([r["val_loss"] for r in whole.curve])
    b = np.array([r["val_loss"] for r in chunked.curve])
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert chunked.summary["best_val_loss"] == pytest.approx(val_loss(module(chunked), ds.val), rel=1e-5)


@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [("adam", "constant"), ("adamw", "constant"), ("radam", "constant"), ("sgd", "constant"),
     ("adam", "cosine"), ("adam", "onecycle")],
)  # fmt: skip
def test_every_optimizer_and_schedule_learns(ds: Dataset, stats: Stats, optimizer: str, schedule: str) -> None:
    initial = val_loss(build_model(MODEL, stats, torch.Generator().manual_seed(0)), ds.val)  # train's init
    result = run(ds, stats, tcfg(epochs=40, optimizer=optimizer, schedule=schedule, seed=0))
    assert result.summary["best_val_loss"] < 0.8 * initial


def test_bf16_autocast_on_cpu_learns(ds: Dataset, stats: Stats) -> None:
    result = run(ds, stats, tcfg(epochs=60, precision="bf16"))
    assert result.summary["precision"] == "bf16" and result.summary["best_val_loss"] < 0.1


@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_other_activations_train(ds: Dataset, stats: Stats, activation: str) -> None:
    result = run(ds, stats, tcfg(epochs=60), ModelConfig(hidden=(32,), activation=activation))  # type: ignore[arg-type]
    assert result.summary["best_val_loss"] < 0.2


def test_minibatch_path(ds: Dataset, stats: Stats, tmp_path: Path) -> None:
    cfg = tcfg(epochs=20, batch_size=64, eval_every=5)
    result = run(ds, stats, cfg)
    n = ds.train.shape[0]
    assert result.summary["steps"] == 20 * math.ceil(n / 64)
    assert [r["step"] for r in result.curve] == [k * math.ceil(n / 64) for k in (5, 10, 15, 20)]
    assert result.summary["best_val_loss"] < 0.1
    again = run(ds, stats, cfg)
    assert weights_bytes(result, tmp_path / "a") == weights_bytes(again, tmp_path / "b")
    full = run(ds, stats, tcfg(epochs=20, batch_size=n))  # a batch >= n is the full-batch path
    assert full.summary["steps"] == 20


def test_lbfgs_improves_on_the_first_phase(ds: Dataset, stats: Stats) -> None:
    first = run(ds, stats, tcfg(epochs=30, lbfgs_steps=0))
    both = run(ds, stats, tcfg(epochs=30, lbfgs_steps=30))
    assert both.curve[: len(first.curve)] == first.curve  # the same first phase, bit for bit
    lbfgs_rows = [r for r in both.curve if r["phase"] == "lbfgs"]
    assert [r["step"] for r in lbfgs_rows] == [40, 50, 60]
    assert both.summary["best_val_loss"] < 0.5 * first.summary["best_val_loss"]
    assert both.summary["steps"] == 60


def test_lbfgs_only(ds: Dataset, stats: Stats) -> None:
    result = run(ds, stats, tcfg(epochs=0, lbfgs_steps=30))
    assert {r["phase"] for r in result.curve} == {"lbfgs"} and result.summary["steps"] == 30
    assert result.summary["best_val_loss"] < 0.2


# --- best weights and early stopping ---------------------------------------------------------


def test_returns_the_best_weights(ds: Dataset, stats: Stats) -> None:
    result = run(ds, stats, tcfg(epochs=50, lr=0.05, eval_every=5, optimizer="sgd"))
    best = min(result.curve, key=lambda r: r["val_loss"])
    assert best is not result.curve[-1]  # SGD with momentum is not monotone here: a real choice
    assert result.summary["best_val_loss"] == best["val_loss"] and result.summary["best_step"] == best["step"]
    assert val_loss(module(result), ds.val) == pytest.approx(best["val_loss"], rel=1e-6)


def test_early_stopping_stops_and_restores_the_best(ds: Dataset, stats: Stats) -> None:
    # min_delta 0.5: an evaluation must halve the best val loss to count, so progress soon
    # "stalls" while the loss still moves: the last weights differ from the best ones.
    cfg = tcfg(epochs=400, eval_every=2, lbfgs_steps=50, early_stopping={"patience": 3, "min_delta": 0.5})
    result = run(ds, stats, cfg)
    s, curve = result.summary, result.curve
    assert s["stopped_early"] and s["steps"] < 400
    assert all(r["phase"] == "first_order" for r in curve)  # L-BFGS skipped after stopping
    i = next(i for i, r in enumerate(curve) if r["step"] == s["best_step"])
    assert len(curve) == i + 1 + 3  # stopped after exactly `patience` evaluations without progress
    assert s["best_val_loss"] == curve[i]["val_loss"]
    for r in curve[i + 1 :]:
        assert not r["val_loss"] < 0.5 * s["best_val_loss"]
    restored = val_loss(module(result), ds.val)
    assert restored == pytest.approx(s["best_val_loss"], rel=1e-6)
    assert restored != pytest.approx(curve[-1]["val_loss"], rel=1e-6)  # not the last weights


def test_patience_zero_never_stops(ds: Dataset, stats: Stats) -> None:
    cfg = tcfg(epochs=40, eval_every=2, early_stopping={"patience": 0, "min_delta": 0.9})
    result = run(ds, stats, cfg)
    assert not result.summary["stopped_early"] and result.summary["steps"] == 40


def test_early_stopping_in_the_lbfgs_phase(ds: Dataset, stats: Stats) -> None:
    cfg = tcfg(epochs=4, eval_every=1, lbfgs_steps=200, early_stopping={"patience": 5, "min_delta": 0.5})
    result = run(ds, stats, cfg)
    assert result.summary["stopped_early"] and result.curve[-1]["phase"] == "lbfgs"
    assert result.summary["steps"] < 204
    assert val_loss(module(result), ds.val) == pytest.approx(result.summary["best_val_loss"], rel=1e-6)


# --- determinism -----------------------------------------------------------------------------


def test_same_params_same_weight_bytes(ds: Dataset, stats: Stats, tmp_path: Path) -> None:
    cfg = tcfg(epochs=30, lbfgs_steps=20, schedule="onecycle")
    a, b = run(ds, stats, cfg), run(ds, stats, cfg)
    assert weights_bytes(a, tmp_path / "a") == weights_bytes(b, tmp_path / "b")
    assert a.curve == b.curve and a.summary == b.summary
    c = run(ds, stats, config.replace(cfg, seed=cfg.seed + 1))
    assert weights_bytes(c, tmp_path / "c") != weights_bytes(a, tmp_path / "a")


def test_training_leaves_global_rngs_alone(ds: Dataset, stats: Stats) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    t_before, n_before = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    run(ds, stats, tcfg(epochs=5, batch_size=64))
    assert torch.equal(torch.random.get_rng_state(), t_before)
    assert np.array_equal(np.random.get_state()[1], n_before)


# --- failures --------------------------------------------------------------------------------


def test_divergence_names_step_and_lr(ds: Dataset, stats: Stats) -> None:
    cfg = tcfg(optimizer="sgd", lr=1e10, epochs=50)
    with pytest.raises(TrainingDiverged) as info:
        run(ds, stats, cfg)
    msg = str(info.value)
    m = re.search(r"loss became (nan|inf|-inf) at step (\d+) \(lr 1e\+10\)", msg)
    assert m, msg
    step = int(m.group(2))
    assert 1 <= step <= 10 and "train.gradient.lr" in msg
    # The named step is the first bad one: one step fewer and every training loss is finite
    # (validation of the weights that produced the bad loss may still fail, as it should).
    if step > 1:
        try:
            run(ds, stats, regrad(cfg, epochs=step - 1, eval_every=step - 1))
        except TrainingDiverged as e:
            assert "validation loss" in str(e), str(e)


def test_nan_labels_diverge_at_step_one(ds: Dataset, stats: Stats) -> None:
    rows = ds.train.copy()
    rows[5, 2] = np.nan
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 1 \(lr 0.03\)"):
        train(tcfg(), MODEL, stats, Rows(rows, ds.val))


def test_nan_in_validation_rows(ds: Dataset, stats: Stats) -> None:
    rows = ds.val.copy()
    rows[0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match=r"validation loss became nan at step 10 \(lr 0.03\)"):
        train(tcfg(), MODEL, stats, Rows(ds.train, rows))


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda", "exp/params.yaml")
    msg = str(info.value)
    assert msg.startswith("exp/params.yaml: train.device is 'cuda'") and "cpu or auto" in msg, msg
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"


# --- progress display ------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_off_a_terminal_and_one_line_on_it() -> None:
    row = {"phase": "first_order", "step": 10, "epoch": 10, "train_loss": 0.5, "val_loss": 0.25}
    quiet = io.StringIO()
    p = Progress(100, quiet)
    p(row)
    p.close()
    assert quiet.getvalue() == ""
    tty = _Tty()
    p = Progress(100, tty)
    p(row)
    p(row)
    p.close()
    out = tty.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "epoch 10/100" in out and "val 2.500e-01" in out
