"""Distributed training: the train stage under torchrun (DDP, gloo on CPU), against one process.

Why 2 ranks and 1 process can differ at all: DDP averages the two shards' gradients, which is
mathematically the full-batch gradient, but the sums are taken in another order (each rank sums
its own rows, then the all-reduce adds the two), so every step differs at float32 round-off
(~1e-7 relative). Adam damps that; L-BFGS's line search amplifies it, more with every iteration.
Measured here (SMALL params, 819 train rows, 60 full-batch Adam epochs + 20 L-BFGS iterations,
one process with 2 threads vs 2 ranks with 1 each): Adam-phase losses within 1.5e-7 relative,
L-BFGS rows within 1.6e-4, best validation loss 1.9e-5 and test RMSE 6.7e-5 apart. With SMALL's
40 L-BFGS iterations the final test RMSE was 3.7 % apart (6.53 vs 6.78): the same round-off,
amplified for longer. The tolerances below leave ~10x headroom; wrong gradient scaling (no × world
size) failed the L-BFGS check by 5.7 %, equal per-shard weighting of unequal shards the Adam check.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circlefit.config import DistributedConfig
from circlefit.distributed import Dist, from_env, shard, shard_size
from circlefit.launch import DistributedError, torchrun_command

from conftest import BIN, SMALL, copy_project, dump_yaml, env, merge, repo_params, run

ADAM_RTOL = 1e-5  # Adam-phase train/val loss per evaluation, relative (measured ≤ 1.5e-7)
LBFGS_RTOL = 2e-3  # every L-BFGS evaluation, relative (measured ≤ 1.6e-4)
FINAL_RTOL = 1e-3  # final test RMSE and best validation loss, relative (measured ≤ 6.7e-5)
TWO_RANKS = {"train": {"lbfgs_steps": 20, "distributed": {"enabled": True, "nproc_per_node": 2}}}
OUTPUTS = ("data/model/weights.safetensors", "data/train/loss.tsv", "data/train/summary.json")


# ---- the pieces, without processes -------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 2, 7, 819, 1024])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_row_once(rows: int, world: int) -> None:
    data = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    parts = [shard(data, Dist(rank=r, world_size=world)) for r in range(world)]
    assert sorted(np.concatenate(parts)[:, 0].tolist()) == data[:, 0].tolist()
    assert [len(p) for p in parts] == [shard_size(rows, r, world) for r in range(world)]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(p.flags.c_contiguous for p in parts)


@pytest.mark.parametrize(("rows", "batch"), [(819, 256), (819, 100), (1024, 1000), (7, 3), (5, 1)])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_minibatch_plan_is_global(rows: int, batch: int, world: int) -> None:
    """train.batch_size is the global batch: each epoch's steps cover every row once, on all ranks."""
    dist = Dist(world_size=world)
    steps = dist.steps_per_epoch(rows, batch)
    per_step = [dist.step_rows(rows, batch, b) for b in range(steps)]
    assert sum(per_step) == rows and all(0 < r <= dist.local_batch(batch) * world for r in per_step)
    if world == 1:  # one process: exactly the plain loop's batches
        assert steps == math.ceil(rows / batch) and per_step == [min(batch, rows - b * batch) for b in range(steps)]


def test_torchrun_is_standalone_unless_a_rendezvous_is_configured() -> None:
    cmd = torchrun_command("stages.train", ["--params", "p.yaml"], 2, {})
    assert cmd[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone", "-m", "stages.train",
                       "--params", "p.yaml"]  # fmt: skip
    multi = torchrun_command("stages.train", [], 4, {"PET_NNODES": "2", "PET_RDZV_ENDPOINT": "node0:29500"})
    assert "--standalone" not in multi and "--nproc-per-node=4" in multi


def test_params_must_say_what_torchrun_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_env(DistributedConfig(False, 2, "auto")) is None  # not under torchrun
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                       "LOCAL_WORLD_SIZE": "2"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert from_env(DistributedConfig(True, 2, "auto")) == Dist(1, 4, 1, 2)
    with pytest.raises(DistributedError, match=r"p\.yaml: train\.distributed\.enabled is false"):
        from_env(DistributedConfig(False, 2, "auto"), "p.yaml")
    with pytest.raises(DistributedError, match=r"nproc_per_node is 3, but torchrun started 2 ranks"):
        from_env(DistributedConfig(True, 3, "auto"))


# ---- the stage under torchrun ----------------------------------------------------------


def _curve(repo: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((repo / "data/train/loss.tsv").open(), delimiter="\t"))


def _results(repo: Path) -> dict[str, Any]:
    return {
        "curve": _curve(repo),
        "summary": json.loads((repo / "data/train/summary.json").read_text()),
        "metrics": json.loads((repo / "data/eval/metrics.json").read_text()),
    }


def _rel(a: float | str, b: float | str) -> float:
    return abs(float(a) - float(b)) / abs(float(b))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The same params trained by one process, then by 2 gloo ranks (`dvc repro evaluate` each time)."""
    base = merge(merge(repo_params(), SMALL), {"train": {"lbfgs_steps": 20}})
    repo = copy_project(tmp_path_factory.mktemp("ddp") / "proj", base)
    run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    one = _results(repo)
    dump_yaml(merge(base, TWO_RANKS), repo / "params.yaml")
    proc = run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    assert "Running stage 'train'" in proc.stdout and "Running stage 'generate'" not in proc.stdout
    yield one, _results(repo)


@pytest.mark.slow
def test_two_ranks_reach_the_metrics_of_one_process(one_and_two: tuple[dict[str, Any], dict[str, Any]]) -> None:
    one, two = one_and_two
    assert two["summary"]["world_size"] == 2 and two["summary"]["backend"] == "gloo"
    assert two["summary"]["threads"] == 1  # train.threads (2) shared by the 2 ranks
    assert two["summary"]["train_rows"] == one["summary"]["train_rows"]  # the shards together
    assert two["summary"]["steps"] == one["summary"]["steps"] == SMALL["train"]["epochs"] + 20
    assert [(r["step"], r["phase"], r["lr"]) for r in two["curve"]] == [
        (r["step"], r["phase"], r["lr"]) for r in one["curve"]
    ]
    for a, b in zip(two["curve"], one["curve"], strict=True):
        rtol = ADAM_RTOL if b["phase"] == "first_order" else LBFGS_RTOL
        for key in ("train_loss", "val_loss"):
            assert _rel(a[key], b[key]) <= rtol, (b["step"], key, a[key], b[key])
    assert _rel(two["summary"]["best_val_loss"], one["summary"]["best_val_loss"]) <= FINAL_RTOL
    assert _rel(two["metrics"]["test"]["rmse"], one["metrics"]["test"]["rmse"]) <= FINAL_RTOL


@pytest.mark.slow
def test_minibatch_ranks_learn(project) -> None:
    """Mini-batches per shard: the same steps as one process (batch_size is global), and it learns."""
    repo = project({"train": {"batch_size": 256, "lbfgs_steps": 0, "distributed": {"enabled": True}}})
    run([str(BIN / "dvc"), "repro", "train"], repo)
    summary = json.loads((repo / "data/train/summary.json").read_text())
    steps_one_process = SMALL["train"]["epochs"] * math.ceil(summary["train_rows"] / 256)
    assert summary["world_size"] == 2 and summary["steps"] == steps_one_process
    curve = _curve(repo)
    assert float(curve[-1]["val_loss"]) < float(curve[0]["val_loss"]) / 4, curve


def _ranks(tag: str) -> dict[int, int]:
    """rank → pid of the torchrun workers whose environment carries `tag`."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if tag.encode() in environ and any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in environ):
            rank = next(v for v in environ if v.startswith(b"RANK="))
            found[int(rank[5:])] = int(proc.name)
    return found


@pytest.mark.slow
def test_a_killed_rank_fails_the_stage_with_no_outputs(project) -> None:
    repo = project({"train": {"epochs": 1_000_000, "distributed": {"enabled": True}}})  # runs until killed
    run([str(BIN / "dvc"), "repro", "normalize"], repo)
    lock = (repo / "dvc.lock").read_bytes()
    tag = f"CIRCLEFIT_TEST_RUN={os.getpid()}-{time.monotonic_ns()}"
    e = env() | dict([tag.split("=", 1)])
    dvc = subprocess.Popen([str(BIN / "dvc"), "repro", "train"], cwd=repo, env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not {0, 1} <= set(ranks := _ranks(tag)):
            assert dvc.poll() is None and time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.2)
        while not list((repo / "data/train").glob(".circlefit-ranks.*")):  # the launcher's staging dir
            time.sleep(0.2)
        time.sleep(3)  # well into training (the ranks are in their all-reduces)
        os.kill(ranks[1], signal.SIGKILL)
        out, _ = dvc.communicate(timeout=120)
    finally:
        if dvc.poll() is None:
            dvc.kill()
    assert dvc.returncode != 0, out
    assert "circlefit train: error: torchrun exited with status 1: a rank failed" in out, out
    assert "exitcode  : -9" in out, out  # torchrun's report names the killed rank as the root cause
    for rel in OUTPUTS:
        assert not (repo / rel).exists(), rel
    assert not list(repo.glob("data/**/.circlefit-ranks.*")), "staging debris left behind"
    assert (repo / "dvc.lock").read_bytes() == lock  # DVC recorded nothing
    assert not _ranks(tag), "a rank outlived the stage"
