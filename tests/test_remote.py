"""Sharing through a DVC remote: push from one clone, pull into a fresh one, nothing reruns.

The remote is a local directory; an S3 or SSH remote (docs/scaling.md) differs only in the
URL and the DVC plugin that talks to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import dvc, git

pytestmark = pytest.mark.slow


def _outs(repo: Path) -> dict[str, bool]:
    """Every output path dvc.yaml declares → whether DVC caches it (the others are committed to git)."""
    stages = YAML(typ="safe").load((repo / "dvc.yaml").read_text())["stages"]
    outs = [o if isinstance(o, dict) else {o: {}} for s in stages.values() for o in s.get("outs", [])]
    return {path: (opts or {}).get("cache", True) for o in outs for path, opts in o.items()}


def _files(root: Path, out: str) -> dict[str, tuple[bytes, int]]:
    """relative path → (bytes, mtime_ns) of every file of output `out` (a file or a directory)."""
    path = root / out
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f.relative_to(root)): (f.read_bytes(), f.stat().st_mtime_ns) for f in files if f.is_file()}


def test_push_then_pull_into_a_fresh_clone_restores_every_output(project, tmp_path: Path) -> None:
    repo = project()
    dvc(repo, "repro")
    dvc(repo, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline run; the shared remote")
    pushed = dvc(repo, "push")
    assert "pushed" in pushed.stdout, pushed.stdout
    outs = _outs(repo)
    original = {k: v[0] for out in outs for k, v in _files(repo, out).items()}
    cached = [o for o, in_cache in outs.items() if in_cache]
    assert {"data/generated", "data/model/weights.safetensors", "data/export/model.onnx"} <= set(cached)

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / ".dvc/cache").exists()  # its own, empty cache
    for out in cached:
        assert not (clone / out).exists(), f"{out} came with git"
    dvc(clone, "pull")

    restored = {k: v for out in outs for k, v in _files(clone, out).items()}
    assert set(restored) == set(original)
    for rel, content in original.items():
        assert restored[rel][0] == content, f"{rel} differs after the round trip"

    lock = (clone / "dvc.lock").read_bytes()
    repro = dvc(clone, "repro")
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "Data and pipelines are up to date." in repro.stdout, repro.stdout
    assert (clone / "dvc.lock").read_bytes() == lock
    after = {k: v for out in outs for k, v in _files(clone, out).items()}
    assert after == restored  # same bytes, and not rewritten (same mtimes)
    assert json.loads(dvc(clone, "status", "--json").stdout) == {}
    assert json.loads(dvc(clone, "status", "--cloud", "--json").stdout) == {}  # clone and remote in sync
