"""Queued sweeps: `dvc exp run --queue` + `dvc queue start -j 2` from a fresh copy of the repo."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, REPO, dvc, env, git

pytestmark = pytest.mark.slow

# Two experiments that share no stage: each its own data seed, so the two workers never save the same
# run-cache entry at once (DVC's run cache is not safe for that: two identical generate stages racing
# can fail one experiment with a missing .tmp file).
SWEEP = [
    ["-S", "model.hidden=[16]", "-S", "data.seed=1", "-S", "train.lstsq.margin=0.04"],
    ["-S", "model.hidden=[16,16]", "-S", "data.seed=2", "-S", "train.lstsq.margin=0.04"],
]
# Appended to the copy's circlefit/__init__.py: every stage process records which circlefit it
# imported, so the test can tell the experiment's own copy from the editable install (REPO).
PROBE = """
import atexit as _atexit
import os as _os
import sys as _sys


def _probe(path=__file__):  # at exit: `python -m stages.X` sets sys.argv[0] only after the package imports
    with open(_os.environ["CIRCLEFIT_TEST_IMPORT_PROBE"], "a", encoding="utf-8") as _f:
        _f.write(f"{_os.path.basename(_sys.argv[0])} {path}\\n")


if _os.environ.get("CIRCLEFIT_TEST_IMPORT_PROBE"):
    _atexit.register(_probe)
"""


def _experiments(repo: Path) -> list[dict[str, Any]]:
    """Each experiment of the current baseline: name, executor state/log, params, metrics."""
    out = []
    for baseline in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in baseline.get("experiments") or []:
            executor = exp.get("executor") or {}
            rev = exp["revs"][0]
            data = rev.get("data") or {}
            out.append({
                "name": exp.get("name") or rev.get("name"),
                "state": executor.get("state", "success" if data.get("metrics") else "unknown"),
                "log": (executor.get("local") or {}).get("log"),
                "params": (data.get("params") or {}).get("params.yaml", {}).get("data", {}),
                "metrics": {path: m.get("data", {}) for path, m in (data.get("metrics") or {}).items()},
            })  # fmt: skip
    return out


def _queue_state(repo: Path) -> tuple[bool, bool] | None:
    """(tasks still Queued/Running, workers alive) from `dvc queue status`; None if it timed out or failed."""
    try:
        proc = subprocess.run(
            [str(BIN / "dvc"), "queue", "status"], cwd=repo, env=env(), capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    tasks, _, workers = proc.stdout.partition("Worker status:")
    return bool(re.search(r"\b(Queued|Running)\b", tasks)), "0 active, 0 idle" not in workers


def _wait(repo: Path, start: list[str], start_env: dict[str, str], timeout: float = 900) -> None:
    """Until no task is queued or running and every worker has exited (restarts are printed).

    Poll the queue, not `dvc exp show`: collecting experiments while a worker finishes one
    can hang (DVC takes the experiments lock from both sides). DVC's idle monitor can stop a
    worker while tasks are still queued (treeverse/dvc#10562); as bench/sweep.py does, another
    `dvc queue start` after 20 s without workers is the workaround (a restart only adds workers;
    it decides nothing the test asserts). `timeout` is a guard against a hang, not a duration
    the sweep is expected to take.
    """
    deadline = time.monotonic() + timeout
    restarts, stalled_since = 0, None
    while (state := _queue_state(repo)) is None or state[0] or state[1]:
        if time.monotonic() > deadline:
            raise AssertionError(f"queue did not finish in {timeout:.0f} s:\n{dvc(repo, 'queue', 'status').stdout}")
        if state is not None:
            busy, workers = state
            stalled_since = None if workers or not busy else (stalled_since or time.monotonic())
            if stalled_since and time.monotonic() - stalled_since > 20:
                _start(repo, start, start_env)
                restarts, stalled_since = restarts + 1, None
        time.sleep(2)
    print(f"dvc queue worker restarts: {restarts}")  # shown with the test's output if it fails later


def _start(repo: Path, start: list[str], start_env: dict[str, str]) -> None:
    # The workers outlive this call and inherit its stdio: give them none, or this call would wait.
    subprocess.run(start, cwd=repo, env=start_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def _readme_exp_show() -> list[str]:
    """The `dvc exp show` command the README's experiments section tells users to run."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Experiments and review", 1)[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("dvc exp show "))
    return shlex.split(line.split("  #", 1)[0])


def test_queued_sweep_runs_two_jobs_from_a_fresh_copy(project, tmp_path):
    repo = project()
    with (repo / "circlefit/__init__.py").open("a", encoding="utf-8") as f:
        f.write(PROBE)
    git(repo, "commit", "-q", "-am", "import probe")
    probe = tmp_path / "imports.txt"

    for sweep in SWEEP:
        queued = dvc(repo, "exp", "run", "--queue", *sweep)
        assert queued.stdout.count("Queued experiment") == 1, queued.stdout
    e = env() | {"CIRCLEFIT_TEST_IMPORT_PROBE": str(probe)}
    start = [str(BIN / "dvc"), "queue", "start", "-j", "2"]
    _start(repo, start, e)
    try:
        _wait(repo, start, e)
    finally:
        dvc(repo, "queue", "stop", "--kill", check=False)
    exps = _experiments(repo)
    assert len(exps) == 2, exps

    failed = {x["name"]: Path(x["log"]).read_text()[-3000:] for x in exps if x["state"] != "success" and x["log"]}
    assert not failed and all(x["state"] == "success" for x in exps), failed or exps
    assert sorted(x["params"]["model"]["hidden"] for x in exps) == [[16], [16, 16]]
    for x in exps:
        assert x["params"]["train"]["lstsq"]["margin"] == 0.04
        assert math.isfinite(x["metrics"]["data/eval/metrics.json"]["test"]["rmse"])
        assert x["metrics"]["data/train/summary.json"]["threads"] == x["params"]["train"]["threads"]

    # The stages of both runs imported their experiment's own circlefit, not the installed one.
    imported = [line.split(" ", 1) for line in probe.read_text().splitlines()]
    workspaces = repo.resolve() / ".dvc" / "tmp" / "exps"
    assert all(Path(path).resolve().is_relative_to(workspaces) for _, path in imported), imported
    ran = {(Path(path).parents[1].name, stage) for stage, path in imported}
    assert len({ws for ws, _ in ran}) == 2, imported
    for ws in {ws for ws, _ in ran}:
        assert {(ws, f"{stage}.py") for stage in ("generate", "normalize", "train", "evaluate")} <= ran, imported

    # The README's focused table shows the swept params and the key metrics as columns.
    table = dvc(repo, *_readme_exp_show()[1:]).stdout
    header = table.splitlines()[0]
    for column in ("Experiment", "model.hidden", "train.lstsq.margin", "test.rmse", "ood.rmse", "best_val_loss"):
        assert re.search(rf"\|\s*{re.escape(column)}\s*\|", header), (column, header)
    for x in exps:
        assert x["name"] in table
