"""Distributed training: the train stage under torchrun (DDP, gloo on CPU), against one process.

Why 2 ranks and 1 process can differ at all: DDP averages the two shards' gradients, which is
mathematically the full-batch gradient, but the sums are taken in another order (each rank sums
its own rows, then the all-reduce adds the two), so every step differs at float32 round-off
(~1e-7 relative). Adam damps that; L-BFGS's line search amplifies it, more with every iteration.
Measured here (SMALL params, 819 train rows, 60 full-batch Adam epochs + 20 L-BFGS iterations,
one process with 2 threads vs 2 ranks with 1 each): Adam-phase losses within 1.2e-7 relative,
L-BFGS rows within 6e-5, best validation loss 1.4e-6 and test RMSE 2.6e-5 apart. With SMALL's
40 L-BFGS iterations the final test RMSE was 1.6 % apart (6.89 vs 6.78) and the best validation
loss 15 %: the same round-off, amplified for longer. The tolerances below leave >= 10x headroom;
a wrong gradient scale (no × world size) failed the L-BFGS check (5.7 %), equal weighting of
the unequal shards (410 and 409 rows) the Adam check (8e-5).

That amplification is chaotic, so no tolerance derived from the round-off holds after many
L-BFGS iterations on every CPU: on an AMD EPYC the 20-iteration rows were 0.19 % apart, on an
Intel Xeon 6e-5. The gradient runs here take 5 L-BFGS iterations, enough to exercise the global
line search, little enough that round-off stays near its Adam-phase size on any CPU.

The lstsq method sums exactly (circlefit.exact): its 2-rank outputs are the one-process bytes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from circlefit.config import DistributedConfig
from circlefit.train.distributed import Dist, from_env, shard, shard_size
from circlefit.train.launch import DistributedError, torchrun_command

from conftest import BIN, SMALL, copy_project, dump_yaml, env, git, merge, repo_params, run

ADAM_RTOL = 1e-5  # Adam-phase train/val loss per evaluation, relative (measured ≤ 1.2e-7)
LBFGS_RTOL = 1e-3  # every L-BFGS evaluation, relative (measured ≤ 6e-5)
FINAL_RTOL = 1e-3  # final test RMSE and best validation loss, relative (measured ≤ 2.6e-5)
LBFGS_STEPS = 5
TWO_RANKS = {"train": {"gradient": {"lbfgs_steps": LBFGS_STEPS}, "distributed": {"enabled": True, "nproc_per_node": 2}}}
OUTPUTS = ("data/model/weights.safetensors", "data/train/loss.tsv", "data/train/summary.json")
DDP_PROBE = Path(__file__).resolve().parent / "ddp_probe"
STAGING = ".*.tmp.*.ranks"  # the launcher's staging directory: a temp sibling of its first output (circlefit.io)


# ---- the pieces, without processes -------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 2, 7, 819, 1024])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_row_once(rows: int, world: int) -> None:
    data = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    parts = [shard(data, Dist(rank=r, world_size=world)) for r in range(world)]
    assert np.array_equal(np.concatenate(parts), data)  # contiguous blocks, in rank order
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
    assert from_env(DistributedConfig(enabled=False, nproc_per_node=2, backend="auto")) is None  # not under torchrun
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                       "LOCAL_WORLD_SIZE": "2"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert from_env(DistributedConfig(enabled=True, nproc_per_node=2, backend="auto")) == Dist(1, 4, 1, 2)
    with pytest.raises(DistributedError, match=r"p\.yaml: train\.distributed\.enabled is false"):
        from_env(DistributedConfig(enabled=False, nproc_per_node=2, backend="auto"), "p.yaml")
    with pytest.raises(DistributedError, match=r"nproc_per_node is 3, but torchrun started 2 ranks"):
        from_env(DistributedConfig(enabled=True, nproc_per_node=3, backend="auto"))


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


BASE = merge(SMALL, {"train": {"method": "gradient", "gradient": {"lbfgs_steps": LBFGS_STEPS}}})


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The same params trained by one process, then by 2 gloo ranks (`dvc repro evaluate` each time)."""
    base = merge(repo_params(), BASE)
    repo = copy_project(tmp_path_factory.mktemp("ddp") / "proj", base)
    run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    one = _results(repo)
    dump_yaml(merge(base, TWO_RANKS), repo / "params.yaml")
    proc = run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    assert "Running stage 'train'" in proc.stdout and "Running stage 'generate'" not in proc.stdout
    yield one, _results(repo) | {"outputs": {rel: (repo / rel).read_bytes() for rel in OUTPUTS}}


@pytest.mark.slow
def test_two_ranks_reach_the_metrics_of_one_process(one_and_two: tuple[dict[str, Any], dict[str, Any]]) -> None:
    one, two = one_and_two
    assert two["summary"]["world_size"] == 2 and two["summary"]["backend"] == "gloo"
    assert two["summary"]["threads"] == 1  # train.threads (2) shared by the 2 ranks
    assert two["summary"]["train_rows"] == one["summary"]["train_rows"]  # the shards together
    assert two["summary"]["steps"] == one["summary"]["steps"] == SMALL["train"]["gradient"]["epochs"] + LBFGS_STEPS
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
def test_lstsq_on_two_ranks_gives_the_one_process_bytes(tmp_path: Path) -> None:
    """The normal equations are summed exactly over ranks, so weights, curve and metrics are bitwise equal."""
    base = merge(repo_params(), SMALL)
    repo = copy_project(tmp_path / "proj", base)
    run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    one = {rel: (repo / rel).read_bytes() for rel in (*OUTPUTS, "data/eval/metrics.json")}
    dump_yaml(merge(base, {"train": {"distributed": {"enabled": True, "nproc_per_node": 2}}}), repo / "params.yaml")
    run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    summary = json.loads((repo / "data/train/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["method"] == "lstsq"
    for rel in ("data/model/weights.safetensors", "data/train/loss.tsv", "data/eval/metrics.json"):
        assert (repo / rel).read_bytes() == one[rel], rel
    strip = {"world_size", "backend", "threads"}  # what says how it ran, not what it computed
    assert {k: v for k, v in summary.items() if k not in strip} == {
        k: v for k, v in json.loads(one["data/train/summary.json"]).items() if k not in strip
    }


@pytest.mark.slow
def test_minibatch_ranks_learn(project) -> None:
    """Mini-batches per shard: the same steps as one process (batch_size is global), and it learns."""
    repo = project(
        {
            "train": {
                "method": "gradient",
                "gradient": {"batch_size": 256, "lbfgs_steps": 0},
                "distributed": {"enabled": True},
            }
        }
    )
    run([str(BIN / "dvc"), "repro", "train"], repo)
    summary = json.loads((repo / "data/train/summary.json").read_text())
    steps_one_process = SMALL["train"]["gradient"]["epochs"] * math.ceil(summary["train_rows"] / 256)
    assert summary["world_size"] == 2 and summary["steps"] == steps_one_process
    curve = _curve(repo)
    assert float(curve[-1]["val_loss"]) < float(curve[0]["val_loss"]) / 4, curve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_as_the_readme_launches_them(one_and_two, tmp_path: Path) -> None:
    """Two "nodes" of one rank each on localhost, set up through torchrun's PET_* variables.

    Node 0 runs `dvc repro train`, node 1 the train stage's command in its own clone; the result
    is byte for byte the one-node, 2-rank run (same world size, 1 thread per rank).
    """
    _, two = one_and_two
    one_per_node = {"train": {"threads": 1, "distributed": {"enabled": True, "nproc_per_node": 1}}}
    node0 = copy_project(tmp_path / "node0", merge(repo_params(), merge(BASE, one_per_node)))
    run([str(BIN / "dvc"), "repro", "normalize"], node0)
    git(tmp_path, "clone", "-q", str(node0), "node1")  # the same commit; its data as `dvc pull` would bring it
    node1 = tmp_path / "node1"
    shutil.copytree(node0 / "data/generated", node1 / "data/generated")
    shutil.copy2(node0 / "data/stats.json", node1 / "data/stats.json")
    rendezvous = {"PET_NNODES": "2", "PET_RDZV_ENDPOINT": f"localhost:{_free_port()}"}
    train_cmd = shlex.split(YAML(typ="safe").load((node0 / "dvc.yaml").read_text())["stages"]["train"]["cmd"])
    launches = (([str(BIN / "dvc"), "repro", "train"], node0, "0"), (train_cmd, node1, "1"))
    procs = [
        subprocess.Popen(cmd, cwd=cwd, env=env() | rendezvous | {"PET_NODE_RANK": rank}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for cmd, cwd, rank in launches
    ]  # fmt: skip
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for rel in OUTPUTS:
        assert (node0 / rel).read_bytes() == two["outputs"][rel], rel
        assert not (node1 / rel).exists(), rel  # node rank 1 writes nothing
    assert not list(node1.glob(f"data/**/{STAGING}"))


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
def test_a_killed_rank_fails_the_stage_with_no_outputs(project, tmp_path: Path) -> None:
    repo = project(
        {"train": {"method": "gradient", "gradient": {"epochs": 1_000_000}, "distributed": {"enabled": True}}}
    )  # until killed
    run([str(BIN / "dvc"), "repro", "normalize"], repo)
    lock = (repo / "dvc.lock").read_bytes()
    tag = f"CIRCLEFIT_TEST_RUN={os.getpid()}-{time.monotonic_ns()}"
    marks = tmp_path / "collectives"  # each rank marks here when it is into training (tests/ddp_probe)
    marks.mkdir()
    e = env() | dict([tag.split("=", 1)]) | {"PYTHONPATH": str(DDP_PROBE), "CIRCLEFIT_TEST_COLLECTIVES": str(marks)}
    log = tmp_path / "dvc.log"  # a file, not a pipe nobody reads while the ranks train
    with log.open("w") as sink:
        dvc = subprocess.Popen([str(BIN / "dvc"), "repro", "train"], cwd=repo, env=e, stdout=sink,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        try:
            deadline = time.monotonic() + 600  # a guard against a hang, not a timing assumption
            while not ({0, 1} <= set(ranks := _ranks(tag)) and {"rank0", "rank1"} <= set(os.listdir(marks))):
                assert dvc.poll() is None and time.monotonic() < deadline, "the ranks never got into training"
                time.sleep(0.2)
            assert list((repo / "data/train").glob(STAGING))  # the launcher's staging dir, while the ranks run
            os.kill(ranks[1], signal.SIGKILL)  # both are past their third all-reduce: training, in step
            dvc.wait(timeout=600)
        finally:
            if dvc.poll() is None:  # failed before the end: stop the run (the launcher stops torchrun's ranks)
                os.killpg(dvc.pid, signal.SIGTERM)
                dvc.wait(timeout=600)
        out = log.read_text()
        assert dvc.returncode != 0, out
        assert "circlefit train: error: torchrun exited with status 1: a rank failed" in out, out
        assert "exitcode  : -9" in out, out  # torchrun's report names the killed rank as the root cause
        for rel in OUTPUTS:
            assert not (repo / rel).exists(), rel
        assert not list(repo.glob(f"data/**/{STAGING}")), "staging debris left behind"
        assert (repo / "dvc.lock").read_bytes() == lock  # DVC recorded nothing
        assert not _ranks(tag), "a rank outlived the stage"
    finally:
        for pid in _ranks(tag).values():  # whatever failed above, no rank of this test trains on
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
