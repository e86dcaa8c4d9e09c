"""examples/node: onnxruntime-node loads a freshly exported model and reproduces the probe outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest

from conftest import REPO
from tiny_model import tiny_model

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "node"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.fixture(scope="module")
def example() -> Path:
    if NODE is None or NPM is None:
        pytest.skip("node and npm are needed for the Node.js example")
    if not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        # The CPU binaries ship inside the package; the default post-install would try to download GPU ones.
        e = dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip")
        proc = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, env=e, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"
    return EXAMPLE


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle"))
    return bundle.model.parent


def node(example: Path, model: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE), "check_probes.mjs", str(model)], cwd=example, capture_output=True, text=True, timeout=600
    )


def test_node_reproduces_probe_outputs(example: Path, bundle_dir: Path) -> None:
    proc = node(example, bundle_dir / "model.onnx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: 24 probes match")


def test_node_fails_on_a_wrong_expected_value(example: Path, bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path, dirs_exist_ok=True)  # model, sidecar, probes, test data set, card
    probes = json.loads((tmp_path / "probes.json").read_text())
    probes["expected"][5] += 0.5
    (tmp_path / "probes.json").write_text(json.dumps(probes))
    proc = node(example, tmp_path / "model.onnx")
    assert proc.returncode == 1
    assert proc.stderr.startswith("check_probes: error: probe 5 xy=("), proc.stderr


def test_node_refuses_a_model_that_does_not_match_its_sidecar(example: Path, bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path, dirs_exist_ok=True)  # model, sidecar, probes, test data set, card
    data = bytearray((tmp_path / "model.onnx").read_bytes())
    weight = onnx.load(str(tmp_path / "model.onnx")).graph.initializer[0].raw_data
    data[data.find(weight)] ^= 1
    (tmp_path / "model.onnx").write_bytes(bytes(data))
    proc = node(example, tmp_path / "model.onnx")
    assert proc.returncode == 1
    assert "does not match" in proc.stderr, proc.stderr
