"""Shared fixtures: the repo's params, and throwaway git+DVC copies of the project."""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small enough that a full `dvc repro` takes seconds, big enough to learn something.
SMALL: dict[str, Any] = {
    "data": {"n": 1024, "ood": {"n": 256}},
    "model": {"hidden": [32]},
    "train": {"gradient": {"epochs": 60, "lbfgs_steps": 40, "eval_every": 10}},
    "evaluate": {"plot_points": 100},
    "export": {"probes": 16, "parity_random": 256, "parity_large_batch": 2048},
}


def repo_params() -> dict[str, Any]:
    return YAML(typ="safe").load((REPO / "params.yaml").read_text())


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_yaml(data: Any, path: Path) -> None:
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as f:
        yaml.dump(data, f)


def env() -> dict[str, str]:
    """The test's environment with this interpreter's bin dir first (DVC runs `python -m …`)."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("PYTHONPATH", None)
    e["CIRCLEFIT_LOG"] = "WARNING"
    return e


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def require(module: str, extra: str) -> ModuleType:
    """An optional dependency: skipped without it here, a failure under CI (.ci/run installs the extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = f"{module} is not installed ({e}); install the extra: pip install -e '.[{extra}]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the {extra} extra: {why}")
        pytest.skip(why)


def cli_imports_no_torch(args: Sequence[str], timeout: float = 600) -> None:
    """`circlefit ARGS` succeeds in a fresh interpreter that never loads torch or the ONNX exporter."""
    code = (
        "import sys; from circlefit.cli import main; "
        f"assert main({list(args)!r}) == 0; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxscript')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "dvc"), *args], repo, check=check)


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["git", "-c", "user.name=circlefit-tests", "-c", "user.email=tests@circlefit.invalid", *args], repo)


def copy_project(dest: Path, params: dict[str, Any] | None = None) -> Path:
    """Copy the tracked (and untracked, not ignored) project files into a fresh git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() or rel.startswith(("tests/", "bench/", "examples/")) or rel == "dvc.lock":
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    for out in ("data/eval", "data/train", "data/export"):  # git-tracked DVC outputs belong to a run, not the copy
        shutil.rmtree(dest / out, ignore_errors=True)
    if params is not None:
        dump_yaml(params, dest / "params.yaml")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "baseline")
    return dest


@pytest.fixture
def small_params() -> dict[str, Any]:
    return merge(repo_params(), SMALL)


@pytest.fixture
def project(tmp_path: Path, small_params: dict[str, Any]) -> Callable[..., Path]:
    """Factory: project(overrides={...}) -> path of a fresh git+DVC copy with small params."""

    def make(overrides: dict[str, Any] | None = None, name: str = "proj") -> Path:
        return copy_project(tmp_path / name, merge(small_params, overrides or {}))

    return make


# Figures the reliability tests measure (RELIABILITY.md quotes them); printed after the run.
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for topic, line in FIGURES.items():
            terminalreporter.write_line(f"{topic}: {line}")


# What the `history` repo changes between its two commits (a param the train stage reads).
HISTORY_CHANGE: dict[str, Any] = {"train": {"lstsq": {"margin": 0.04}}}  # moves the trained weights


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose HEAD~1 is a reproduced small baseline and HEAD the same after HISTORY_CHANGE.

    Shared by several test modules: read it, never modify it (copy it first).
    """
    base = merge(repo_params(), SMALL)
    repo = copy_project(tmp_path_factory.mktemp("history") / "proj", base)
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline run")
    dump_yaml(merge(base, HISTORY_CHANGE), repo / "params.yaml")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change train.lstsq.margin")
    return repo


class PicklePayload:
    """Unpickling this opens (creates) the sentinel file: a stand-in for arbitrary code in a
    pickle. Tests put it in model and data files and assert the sentinel never appears."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.sentinel), "w"))
