"""Faults injected into each stage under a real `dvc repro`, and what is left afterwards.

Per stage: (1) a write that fails half-way (ENOSPC after half of the stage's key output reached the
disk) and (2) SIGKILL of the whole process group (dvc, its shell, the stage) while that half-written
file sits on disk (the stage last, so that it stays an unreaped zombie through the rerun, as under
a PID 1 that never reaps). Afterwards no file under a final name differs from the clean run's,
dvc.lock is byte-identical, the leftovers of a kill are git-ignored temp siblings, and the next
plain `dvc repro` succeeds with every output and dvc.lock byte-identical to the clean run's.

The faults come from tests/faults/sitecustomize.py, which Python loads from PYTHONPATH; it acts
only inside the targeted stage's process, so the library has no test-only code path.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from circlefit.config import load_params
from circlefit.export.graph import params_digest

from conftest import BIN, FIGURES, dump_yaml, dvc, env, git

pytestmark = pytest.mark.slow

FAULTS = Path(__file__).resolve().parent / "faults"
STAGES = ("generate", "normalize", "train", "evaluate", "export")
# The output each stage's fault cuts in half (for train: the weights, written last, after the curve).
TARGETS = {
    "generate": "data/generated/test.npy",
    "normalize": "data/stats.json",
    "train": "data/model/weights.safetensors",
    "evaluate": "data/eval/metrics.json",
    "export": "data/export/model.onnx",
}
TEMP = re.compile(r"(^|/)\.[^/]+\.tmp\.\d+\.[^/]+")  # circlefit.io's temp siblings: .NAME.tmp.PID.XXXX
NOT_OUTPUTS = {"data/train/timing.json"}  # wall time: differs run to run, not a DVC output
TALLY: dict[str, list[str]] = {"injected": [], "recovered": [], "swept": []}


@dataclass(frozen=True)
class Clean:
    repo: Path
    lock: bytes
    files: dict[str, str]


def snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file under data/ (DVC's .gitignore files included)."""
    out = {}
    for p in sorted((repo / "data").rglob("*")):
        rel = p.relative_to(repo).as_posix()
        if p.is_file() and rel not in NOT_OUTPUTS:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def debris(files: dict[str, str] | list[str]) -> list[str]:
    return [rel for rel in files if TEMP.search(rel)]


@pytest.fixture(scope="module")
def clean(history: Path) -> Clean:
    """The shared `history` project (HEAD: a clean, committed `dvc repro`); only read, never run in."""
    files = snapshot(history)
    assert not debris(files) and files
    return Clean(history, (history / "dvc.lock").read_bytes(), files)


def copy(clean: Clean, dest: Path) -> Path:
    shutil.copytree(clean.repo, dest, symlinks=True)
    return dest


def fault_env(stage: str, kind: str, target: str, nbytes: int, mark: Path) -> dict[str, str]:
    e = env()
    e.update(
        PYTHONPATH=str(FAULTS),
        CIRCLEFIT_FAULT_STAGE=stage,
        CIRCLEFIT_FAULT=kind,
        CIRCLEFIT_FAULT_FILE=Path(target).name,
        CIRCLEFIT_FAULT_BYTES=str(nbytes),
        CIRCLEFIT_FAULT_MARK=str(mark),
    )
    return e


def state_fields(stat: Path) -> list[str] | None:
    """The fields after the command name in a /proc …/stat file (state, ppid, pgrp, …); None if it is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def state(stat: Path) -> str | None:
    """The state letter (R, S, D, Z, …) in a /proc …/stat file; None if that process or thread is gone."""
    fields = state_fields(stat)
    return fields[0] if fields else None


def running(pid: int) -> bool:
    """Whether any thread of process `pid` still runs. Once none does, its files are closed (and its locks gone).

    A zombie no longer runs. Its thread-group leader is shown as a zombie while other threads may
    still be exiting, holding the open files, so every thread is looked at.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    return any(state(task / "stat") not in (None, "Z", "X") for task in tasks)


PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


@contextlib.contextmanager
def orphans_kept_as_zombies() -> Iterator[None]:
    """In the block, processes orphaned below this one become its children, and stay zombies until it ends.

    That is a kill under a PID 1 that never reaps (common in containers): the stage, killed after
    its parents, stays a zombie, which still answers kill(pid, 0), while the rerun looks at its temp.
    (Killed before them, a parent could reap it first: wait(2) reaps before it sees its own SIGKILL.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            if (state_fields(stat) or [])[:2] == ["Z", str(os.getpid())]:  # a zombie child of ours: reap it
                os.waitpid(int(stat.parent.name), 0)


def fail_half_way(repo: Path, stage: str, nbytes: int, tmp: Path) -> str:
    """`dvc repro -f -s STAGE` with the stage's key output failing (ENOSPC) after `nbytes`."""
    cmd = [str(BIN / "dvc"), "repro", "-f", "-s", stage]
    e = fault_env(stage, "raise", TARGETS[stage], nbytes, tmp / "mark")
    proc = subprocess.run(cmd, cwd=repo, env=e, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"circlefit {stage}: error: [Errno 28] No space left on device: " in out, out
    assert "Traceback" not in out, out
    return out


def kill_half_way(repo: Path, stage: str, nbytes: int, tmp: Path) -> str:
    """`dvc repro -f -s STAGE` in its own process group, SIGKILLed once half the key output is on disk.

    Every process of the group is killed, the stage last: its parents are gone by then, so it
    is orphaned to this process (see orphans_kept_as_zombies) and stays a zombie.
    """
    mark, log = tmp / "mark", tmp / "dvc.log"
    cmd = [str(BIN / "dvc"), "repro", "-f", "-s", stage]
    e = fault_env(stage, "kill", TARGETS[stage], nbytes, mark)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=e, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300  # a guard against a hang, not a timing assumption
            while not mark.exists():
                assert proc.poll() is None, f"dvc ended before the fault fired:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the fault never fired:\n{log.read_text()}"
                time.sleep(0.05)
            stage_pid = int(mark.read_text().split()[0])
            parents = [pid for pid in group(proc.pid) if pid != stage_pid]
            assert stage_pid in group(proc.pid) and proc.pid in parents
            for pid in parents:  # they wait on their children and run nothing else now: none forks
                os.kill(pid, signal.SIGKILL)
            until_not_running(parents, "a parent of the stage survived SIGKILL")
            os.kill(stage_pid, signal.SIGKILL)
            until_not_running([stage_pid], "the stage survived SIGKILL")  # nothing finishes the write later
            assert group(proc.pid) == [], "a process of the group outlived the kill"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    return log.read_text()


def group(pgid: int) -> list[int]:
    """The processes of process group `pgid` that still run (zombies do not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = (state_fields(stat) or [""])[:3]  # state, ppid, pgrp
        if fields[2:] == [str(pgid)] and running(int(stat.parent.name)):
            found.append(int(stat.parent.name))
    return sorted(found)


def until_not_running(pids: list[int], message: str) -> None:
    deadline = time.monotonic() + 300  # a guard against a hang: SIGKILL needs no time we could assume
    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def check_left_behind(repo: Path, clean: Clean, stage: str, kind: str) -> list[str]:
    """After a fault: nothing partial under a final name, dvc.lock as before, leftovers invisible to git."""
    assert (repo / "dvc.lock").read_bytes() == clean.lock, "dvc.lock changed"
    now = snapshot(repo)
    temps = debris(now)
    for rel, digest in now.items():
        if rel not in temps:
            assert clean.files.get(rel) == digest, f"{rel}: under a final name but not the clean run's bytes"
    assert not (repo / TARGETS[stage]).exists()
    if kind == "raise":
        assert temps == [], f"a failed write left temp files: {temps}"
    else:  # the half-written file is there, in a temp sibling: the kill did hit mid-write
        assert any(t.endswith("/" + Path(TARGETS[stage]).name) for t in temps), temps
    status = git(repo, "status", "--porcelain", "--untracked-files=all").stdout
    assert not [s for s in status.splitlines() if s.startswith("??")], status
    changed = json.loads(dvc(repo, "status", "--json").stdout)
    assert stage in changed, changed
    return temps


def check_recovers(repo: Path, clean: Clean, stage: str, temps: list[str]) -> None:
    """The next plain `dvc repro` succeeds and gives the clean run's bytes everywhere."""
    proc = dvc(repo, "repro")
    assert (repo / "dvc.lock").read_bytes() == clean.lock
    now = snapshot(repo)
    assert {k: v for k, v in now.items() if k not in debris(now)} == clean.files
    ran = f"Running stage '{stage}'" in proc.stdout  # else DVC restored the outputs from its run cache
    left = debris(now)
    if ran:
        assert left == [], f"the stage reran but left stale temp files: {left}"
    assert set(left) <= set(temps)
    assert git(repo, "status", "--porcelain", "--untracked-files=all").stdout == ""  # dvc.lock and outputs as committed
    if temps and not left:
        TALLY["swept"].append(stage)


def record() -> None:
    n, ok = len(TALLY["injected"]), len(TALLY["recovered"])
    FIGURES["faults"] = (
        f"{n} injected, {ok} recovered (dvc.lock unchanged after each; next `dvc repro` byte-identical "
        f"to the clean run); kill leftovers swept by the rerun: {len(TALLY['swept'])}"
    )


@pytest.mark.parametrize("kind", ["raise", "kill"])
@pytest.mark.parametrize("stage", STAGES)
def test_fault_half_way_through_a_write(clean: Clean, tmp_path: Path, stage: str, kind: str) -> None:
    repo = copy(clean, tmp_path / "proj")
    nbytes = (clean.repo / TARGETS[stage]).stat().st_size // 2
    assert nbytes > 0
    TALLY["injected"].append(f"{stage}/{kind}")
    record()
    if kind == "raise":
        fail_half_way(repo, stage, nbytes, tmp_path)
        check_recovers(repo, clean, stage, check_left_behind(repo, clean, stage, kind))
    else:
        with orphans_kept_as_zombies():
            kill_half_way(repo, stage, nbytes, tmp_path)
            zombie = Path(f"/proc/{(tmp_path / 'mark').read_text().split()[0]}/stat")
            assert state(zombie) == "Z", "the killed stage is not a zombie"
            check_recovers(repo, clean, stage, check_left_behind(repo, clean, stage, kind))
            assert state(zombie) == "Z", "the killed stage was reaped before the rerun was checked"
    TALLY["recovered"].append(f"{stage}/{kind}")
    record()


def test_keep_going_with_a_failing_train_runs_nothing_on_a_stale_model(clean: Clean, tmp_path: Path) -> None:
    repo = copy(clean, tmp_path / "proj")
    good = (repo / "params.yaml").read_text()
    params = YAML(typ="safe").load(good)
    params["train"]["method"] = "gradient"
    params["train"]["gradient"].update(optimizer="sgd", lr=1e10, schedule="constant")  # diverges at once
    dump_yaml(params, repo / "params.yaml")
    before = snapshot(repo)

    proc = dvc(repo, "repro", "--keep-going", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "circlefit train: error: " in out and "loss became" in out, out
    ran = re.findall(r"Running stage '(\w+)'", out)
    assert ran == ["check_params", "train"], ran  # evaluate and export were skipped
    assert not (repo / "data/model/weights.safetensors").exists()  # no weights: neither stale nor partial
    downstream = [r for r in before if r.startswith(("data/eval/", "data/export/"))]
    assert len(downstream) >= 6
    assert {r: snapshot(repo).get(r) for r in downstream} == {r: before[r] for r in downstream}  # not rewritten

    # dvc.lock: only check_params (which passed) moved; train, evaluate, export still describe the old run.
    old, new = (YAML(typ="safe").load(b)["stages"] for b in (clean.lock, (repo / "dvc.lock").read_bytes()))
    new.pop("check_params"), old.pop("check_params")
    assert new == old
    assert {"train", "evaluate", "export"} <= set(json.loads(dvc(repo, "status", "--json").stdout))
    # The old export is recognizably not of the current params.
    sidecar = json.loads((repo / "data/export/model.json").read_text())
    assert sidecar["params_sha256"] != params_digest(load_params(repo / "params.yaml"))

    (repo / "params.yaml").write_text(good)
    dvc(repo, "repro")
    assert (repo / "dvc.lock").read_bytes() == clean.lock
    assert snapshot(repo) == clean.files
