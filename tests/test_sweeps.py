"""Pinning queued experiments: each DVC queue worker keeps the environment and CPUs it was started with.

The recipe in docs/experiments.md for giving each worker its own GPU (CUDA_VISIBLE_DEVICES) or cores: queue
the experiments, then start the workers one at a time, each with its own environment and CPU
affinity; a later `dvc queue start -j N` only adds the workers that are not running yet.

Which worker runs which experiment is decided here by construction, not by how long anything
takes. A DVC queue worker runs one experiment at a time and reserves no other while it does
(concurrency 1, prefetch 1, late acks: dvc/repo/experiments/queue/celery.py). Every stage of
both experiments waits at a gate the test opens only once both experiments are running. So:
worker 1, the only worker when it starts, takes one experiment and is still in it when worker 2
starts; the other experiment can only go to a worker of the second `dvc queue start`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import BIN, dvc, env, git

pytestmark = pytest.mark.slow

# Appended to the copy's circlefit/__init__.py, so it runs in every stage process of the
# experiments: it records where it runs and with which GPU and CPUs, then waits for the gate.
PROBE = """
import os as _os
import time as _time

if _os.environ.get("CIRCLEFIT_TEST_PIN_PROBE"):
    with open(_os.environ["CIRCLEFIT_TEST_PIN_PROBE"], "a", encoding="utf-8") as _f:
        _cpus = ",".join(map(str, sorted(_os.sched_getaffinity(0))))
        _f.write(f"{_os.getcwd()} {_os.environ.get('CUDA_VISIBLE_DEVICES')} {_cpus}\\n")
    while not _os.path.exists(_os.environ["CIRCLEFIT_TEST_PIN_GATE"]):  # the test opens it
        _time.sleep(0.1)
"""
HANG_GUARD_S = 900  # only against a hang; nothing here waits for a duration


def _seen(probe: Path) -> dict[str, set[tuple[str, str]]]:
    """Experiment workspace → the (CUDA_VISIBLE_DEVICES, CPUs) its stages saw, from complete probe lines."""
    seen: dict[str, set[tuple[str, str]]] = {}
    text = probe.read_text(encoding="utf-8") if probe.exists() else ""
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):  # a line being appended is read when it is whole
            cwd, gpu, cpu = line.split()
            seen.setdefault(cwd, set()).add((gpu, cpu))
    return seen


def _until(what: str, done: Callable[[], bool], repo: Path) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not done():
        assert time.monotonic() < deadline, f"{what}: not after {HANG_GUARD_S} s\n{dvc(repo, 'queue', 'status').stdout}"
        time.sleep(0.5)


def _start_worker(repo: Path, jobs: int, gpu: str, cpu: int, e: dict[str, str]) -> None:
    subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", str(jobs)], cwd=repo,
                   env=e | {"CUDA_VISIBLE_DEVICES": gpu}, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip


def test_each_worker_keeps_its_gpu_and_cpus(project, tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs to pin 2 workers apart")
    repo = project({"train": {"threads": 1}})
    with (repo / "circlefit/__init__.py").open("a", encoding="utf-8") as f:
        f.write(PROBE)
    git(repo, "commit", "-q", "-am", "pinning probe")
    probe, gate = tmp_path / "seen.txt", tmp_path / "gate"
    e = env() | {"CIRCLEFIT_TEST_PIN_PROBE": str(probe), "CIRCLEFIT_TEST_PIN_GATE": str(gate)}
    # Two data seeds: the experiments share no stage, so the workers never save one run-cache entry at once.
    dvc(repo, "exp", "run", "--queue", "-S", "data.seed=1,2")
    try:
        _start_worker(repo, 1, "0", cpus[0], e)  # the only worker: it takes one experiment and holds it at the gate
        _until("worker 1 running an experiment", lambda: len(_seen(probe)) >= 1, repo)
        first = set(_seen(probe))
        _start_worker(repo, 2, "1", cpus[1], e)  # adds worker 2, with its own GPU and CPU: it takes the other
        _until("both experiments running", lambda: len(_seen(probe)) >= 2, repo)
        gate.touch()
        _until("the queue done", lambda: not re.search(r"\b(Queued|Running)\b", _tasks(repo)), repo)
    finally:
        gate.touch()  # never leave a stage waiting
        dvc(repo, "queue", "stop", "--kill", check=False)
    assert dvc(repo, "queue", "status").stdout.count("Success") == 2
    seen = _seen(probe)
    assert len(seen) == 2 and all(len(v) == 1 for v in seen.values()), seen
    assert [seen[ws] for ws in sorted(seen, key=lambda ws: ws not in first)] == [
        {("0", str(cpus[0]))},  # worker 1's experiment, every stage
        {("1", str(cpus[1]))},  # the other, in worker 2
    ], seen


def _tasks(repo: Path) -> str:
    return dvc(repo, "queue", "status").stdout.split("Worker status:")[0]
