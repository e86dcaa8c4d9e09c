"""The release flow, offline: GTO tags a version and a stage, `dvc push` fills a local remote, and a consumer in
another directory gets the model and the whole export by version and by stage through a `file://` clone URL.

The producer's DVC cache is deleted before the consumer runs, and the consumer clones the bare origin (a
URL, not a path: DVC opens a local path in place and would read that repository's cache), so every byte
it gets comes from the remote. Each result is byte-identical to the pipeline's output; the export
directory passes `circlefit verify`; an unknown version or stage fails with DVC's own message.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, env

pytestmark = pytest.mark.slow


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    e = env() | {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(list(cmd), cwd=cwd, env=e, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on one side, or other bytes)."""
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {
        p.relative_to(b) for p in b.rglob("*") if p.is_file()
    }
    return sorted(
        str(f)
        for f in files
        if not ((a / f).is_file() and (b / f).is_file() and filecmp.cmp(a / f, b / f, shallow=False))
    )


@pytest.fixture(scope="module")
def released(history: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A producer clone of `history` that registered v1.0.0 of both artifacts, assigned prod, pushed the DVC
    remote, the branch and the tags to a bare origin, then lost its cache. Returns (clone URL, pipeline output)."""
    tmp_path = tmp_path_factory.mktemp("release")
    origin, remote, producer = tmp_path / "origin.git", tmp_path / "dvc-remote", tmp_path / "producer"
    sh(tmp_path, "git", "init", "-q", "--bare", "--initial-branch=main", str(origin))  # HEAD names the pushed branch
    sh(tmp_path, "git", "clone", "-q", str(history), str(producer))
    shutil.copytree(history / ".dvc" / "cache", producer / ".dvc" / "cache")  # the pipeline's outputs, not rerun
    sh(producer, str(BIN / "dvc"), "checkout", "-q")
    assert same_tree(producer / "data" / "export", history / "data" / "export") == []
    for key, value in (("user.name", "circlefit-release"), ("user.email", "release@circlefit.invalid")):
        sh(producer, "git", "config", key, value)  # gto tags with the repository's identity
    sh(
        producer, str(BIN / "dvc"), "remote", "add", "-d", "local", str(remote)
    )  # absolute: clones resolve it as written
    sh(producer, "git", "commit", "-q", "-am", "DVC remote")
    sh(producer, "git", "remote", "set-url", "origin", origin.as_uri())
    sh(producer, "git", "push", "-q", "origin", "main")

    gto = str(BIN / "gto")
    for artifact in ("circlefit-model", "circlefit-export"):
        registered = sh(producer, gto, "register", artifact, "--version", "v1.0.0").stdout
        assert f"Created git tag '{artifact}@v1.0.0'" in registered
        assigned = sh(producer, gto, "assign", artifact, "--version", "v1.0.0", "--stage", "prod").stdout
        assert f"Created git tag '{artifact}#prod#1'" in assigned
    sh(producer, str(BIN / "dvc"), "push", "-q")
    sh(producer, "git", "push", "-q", "origin", "--tags")
    tags = sh(producer, "git", "ls-remote", "--tags", "origin").stdout
    assert {
        "circlefit-model@v1.0.0",
        "circlefit-model#prod#1",
        "circlefit-export@v1.0.0",
        "circlefit-export#prod#1",
    } <= {line.split("refs/tags/")[1] for line in tags.splitlines()}
    shutil.rmtree(producer / ".dvc" / "cache")
    return origin.as_uri(), history / "data" / "export"


def test_a_consumer_gets_each_release_by_version_and_by_stage(released: tuple[str, Path], tmp_path: Path) -> None:
    url, pipeline = released
    consumer = tmp_path / "consumer"  # not a git repository
    consumer.mkdir()
    dvc = str(BIN / "dvc")
    for how in (["--rev", "v1.0.0"], ["--stage", "prod"]):
        name = how[1]
        got = sh(consumer, dvc, "artifacts", "get", url, "circlefit-model", *how, "-o", f"model-{name}/model.onnx")
        assert "Downloaded 1 file(s)" in got.stdout, got.stdout
        assert (consumer / f"model-{name}" / "model.onnx").read_bytes() == (pipeline / "model.onnx").read_bytes()

        sh(consumer, dvc, "artifacts", "get", url, "circlefit-export", *how, "-o", f"export-{name}")
        # the git-tracked files (sidecar, probes, card, Model Zoo set, .gitignore) and the DVC-cached model together
        assert same_tree(consumer / f"export-{name}", pipeline) == []
        checked = sh(consumer, str(BIN / "circlefit"), "verify", f"export-{name}")
        assert checked.stdout.startswith(f"export-{name}/model.onnx: ok: sha256 "), checked.stdout


def test_an_unknown_version_or_stage_fails_clearly(released: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = released
    dvc = str(BIN / "dvc")
    for how, asked in ((["--rev", "v9.9.9"], "v9.9.9"), (["--stage", "staging"], "staging")):
        proc = sh(tmp_path, dvc, "artifacts", "get", url, "circlefit-model", *how, "-o", "nothing.onnx", check=False)
        assert proc.returncode != 0
        assert f"Unable to find artifact 'circlefit-model @ {asked}'" in proc.stderr, proc.stderr
        assert not (tmp_path / "nothing.onnx").exists()
