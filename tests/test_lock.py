"""The lock files agree with pyproject.toml, with each other and with this venv. No network.

requirements/lock.txt and lock-cuda.txt come from `bash scripts/lock.sh`; scripts/install.sh
installs a selection of them (scripts/locked.py) and records it in .venv/circlefit-locked.txt.
A pyproject edit without a lock refresh, a hand edit of a lock, or a venv that drifted from the
lock fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REFRESH = "run `bash scripts/lock.sh` and commit requirements/"


def _load_locked() -> ModuleType:
    spec = importlib.util.spec_from_file_location("circlefit_locked", REPO / "scripts" / "locked.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


locked = _load_locked()
LOCK = locked.parse_lock(locked.LOCK)
CUDA = locked.parse_lock(locked.CUDA_LOCK)
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = sorted(PROJECT["optional-dependencies"])
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")


def _requirements(group: str) -> list[Requirement]:
    specs = PROJECT["dependencies"] if group == "base" else PROJECT["optional-dependencies"][group]
    return [Requirement(s) for s in specs]


@pytest.mark.parametrize("group", ["base", *EXTRAS])
def test_every_direct_dependency_is_locked_within_its_range(group: str) -> None:
    for req in _requirements(group):
        name = locked.canonical(req.name)
        assert name in LOCK, f"{req} ({group}) is not in requirements/lock.txt: {REFRESH}"
        version = LOCK[name].version
        # prereleases=True: the range test only; `+cpu` is a local label, which specifiers ignore
        assert req.specifier.contains(version, prereleases=True), (
            f"lock.txt has {name}=={version}, outside pyproject's {req}: {REFRESH}"
        )


def test_lock_has_nothing_pyproject_does_not_need() -> None:
    # A dependency that becomes direct and was locked already as a transitive one (pydantic via
    # dvc) passes both tests without a refresh; one dropped from pyproject and needed by nothing
    # else fails here.
    everything = locked.closure(LOCK, locked.direct_requirements(EXTRAS))
    assert everything == set(LOCK), f"in lock.txt but needed by nothing: {sorted(set(LOCK) - everything)}: {REFRESH}"


@pytest.mark.parametrize("path", [locked.LOCK, locked.CUDA_LOCK], ids=lambda p: p.name)
def test_every_pin_is_hashed_and_no_index_is_named(path: Path) -> None:
    entries = LOCK if path == locked.LOCK else CUDA
    for entry in entries.values():
        assert entry.hashes, f"{path.name}: {entry.name} has no --hash"
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in entry.hashes), entry.hashes
    text = path.read_text()
    assert "://" not in text, f"{path.name} names a host"
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host)", text, re.M)
    assert text.splitlines()[1].strip() == "#    bash scripts/lock.sh", "the header names the refresh command"


def test_cpu_and_cuda_locks_agree() -> None:
    cpu_torch, cuda_torch = Version(LOCK["torch"].version), Version(CUDA["torch"].version)
    assert cpu_torch.local == "cpu" and cuda_torch.local is None
    assert cpu_torch.public == cuda_torch.public, "one torch release for both builds"
    for name in ("torch-cpu.in", "torch-cuda.in"):
        pins = [line for line in (REPO / "requirements" / name).read_text().splitlines() if line[:1].isalnum()]
        lock = LOCK if name == "torch-cpu.in" else CUDA
        assert pins == [f"torch=={lock['torch'].version}"], f"requirements/{name} vs its lock: {REFRESH}"
    shared = sorted(set(CUDA) & set(LOCK) - {"torch"})
    assert shared, "lock-cuda.txt shares torch's pure-Python deps with lock.txt"
    assert {n: CUDA[n].version for n in shared} == {n: LOCK[n].version for n in shared}, REFRESH
    assert not [n for n in LOCK if CUDA_ONLY.match(n)], "lock.txt's CPU torch needs no CUDA packages"
    assert all(CUDA_ONLY.match(n) for n in set(CUDA) - set(LOCK)), "lock-cuda.txt adds only CUDA packages"


def test_selection_is_the_closure_of_the_named_extras() -> None:
    base = {e.name: e for e in locked.select([])}
    assert base["torch"].version.endswith("+cpu")
    assert not {"pytest", "ruff", "mypy", "matplotlib", "openvino", "tract"} & set(base)
    assert {"dvc", "onnx", "onnxscript", "onnxruntime", "numpy", "pydantic", "sympy"} <= set(base)
    assert not [n for n in base if CUDA_ONLY.match(n)], "the CPU path pulls no nvidia-* package"
    ci = {e.name for e in locked.select(["dev", "runtimes"])}
    assert {"pytest", "ruff", "mypy", "openvino", "tract", "pluggy"} <= ci and "matplotlib" not in ci
    cuda = {e.name: e for e in locked.select([], torch="cuda")}
    assert cuda["torch"].version == CUDA["torch"].version
    assert {"triton", "nvidia-cublas"} <= set(cuda) and set(cuda) - set(CUDA) == set(base) - {"torch"} - set(CUDA)
    assert "torch" not in {e.name for e in locked.select([], torch="none")}


def test_this_venv_has_exactly_what_install_sh_selected() -> None:
    record = Path(sys.prefix) / "circlefit-locked.txt"
    if not record.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{record} missing: CI installs with scripts/install.sh, which writes it")
        pytest.skip("not a venv made by scripts/install.sh (no circlefit-locked.txt)")
    wanted = locked.parse_lock(record)
    installed = {locked.canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    drift = {n: (e.version, installed.get(n)) for n, e in wanted.items() if installed.get(n) != e.version}
    assert not drift, f"lock vs installed (re-run scripts/install.sh): {drift}"
    for name, entry in wanted.items():  # the record is a selection of today's locks, not an old copy
        cuda_build = name in CUDA and (name not in LOCK or not entry.version.endswith("+cpu"))
        source = CUDA if cuda_build else LOCK
        assert (entry.version, entry.hashes) == (source[name].version, source[name].hashes), name
    if "torch" in wanted and wanted["torch"].version.endswith("+cpu"):
        assert not [n for n in installed if CUDA_ONLY.match(n)], "CPU install has CUDA packages"
    if os.environ.get("CI"):  # a fresh venv; by hand one may add e.g. dvc[s3] (docs/scaling.md)
        unlocked = sorted(set(installed) - set(wanted) - {"circlefit", "pip"})
        assert not unlocked, f"installed but not from the lock: {unlocked}"
