"""Pinning queued experiments: each DVC queue worker keeps the environment and CPUs it was started with.

The README's recipe for giving each worker its own GPU (CUDA_VISIBLE_DEVICES) or cores: start
the workers one at a time, each with its own environment and CPU affinity; a later
`dvc queue start -j N` only adds the workers that are not running yet.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, dvc, env, git

pytestmark = pytest.mark.slow

PROBE = """
import os as _os
import sys as _sys

if _os.environ.get("CIRCLEFIT_TEST_PIN_PROBE"):
    with open(_os.environ["CIRCLEFIT_TEST_PIN_PROBE"], "a", encoding="utf-8") as _f:
        _cpus = ",".join(map(str, sorted(_os.sched_getaffinity(0))))
        _f.write(f"{_os.getcwd()} {_os.environ.get('CUDA_VISIBLE_DEVICES')} {_cpus}\\n")
"""


def _workers(repo: Path) -> int:
    out = dvc(repo, "queue", "status").stdout
    found = re.search(r"Worker status: (\d+) active, (\d+) idle", out)
    return int(found[1]) + int(found[2]) if found else 0


def _start_worker(repo: Path, jobs: int, gpu: str, cpu: int, e: dict[str, str]) -> None:
    subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", str(jobs)], cwd=repo,
                   env=e | {"CUDA_VISIBLE_DEVICES": gpu}, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while _workers(repo) < jobs:
        assert time.monotonic() < deadline, "the worker never came up"
        time.sleep(1)


def test_each_worker_keeps_its_gpu_and_cpus(project, tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs to pin 2 workers apart")
    repo = project({"train": {"threads": 1, "lbfgs_steps": 0}})
    with (repo / "circlefit/__init__.py").open("a", encoding="utf-8") as f:
        f.write(PROBE)
    git(repo, "commit", "-q", "-am", "pinning probe")
    probe = tmp_path / "seen.txt"
    e = env() | {"CIRCLEFIT_TEST_PIN_PROBE": str(probe)}
    dvc(repo, "exp", "run", "--queue", "-S", "train.lr=0.003,0.01")
    try:
        _start_worker(repo, 1, "0", cpus[0], e)  # worker 1 takes the first experiment
        _start_worker(repo, 2, "1", cpus[1], e)  # adds worker 2 only, with its own GPU and CPU
        deadline = time.monotonic() + 420
        while re.search(r"\b(Queued|Running)\b", dvc(repo, "queue", "status").stdout.split("Worker status:")[0]):
            assert time.monotonic() < deadline, dvc(repo, "queue", "status").stdout
            time.sleep(2)
    finally:
        dvc(repo, "queue", "stop", "--kill", check=False)
    assert dvc(repo, "queue", "status").stdout.count("Success") == 2
    seen: dict[str, set[tuple[str, str]]] = {}  # experiment workspace → (CUDA_VISIBLE_DEVICES, CPUs) of its stages
    for line in probe.read_text().splitlines():
        cwd, gpu, cpu = line.split()
        seen.setdefault(cwd, set()).add((gpu, cpu))
    assert len(seen) == 2 and all(len(v) == 1 for v in seen.values()), seen
    assert sorted(next(iter(v)) for v in seen.values()) == [("0", str(cpus[0])), ("1", str(cpus[1]))], seen
