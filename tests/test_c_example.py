"""examples/c: a C program on the onnxruntime C API loads a freshly exported model and reproduces the probes.

Built with `make -C examples/c` (gcc, the onnxruntime wheel's shared library, the C API header from
Debian's libonnxruntime-dev via apt-get download). Without gcc, make or apt-get the tests skip; in CI
(CI=true) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tiny_model import tiny_model

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "c"
BINARY = EXAMPLE / "build" / "check_probes"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI builds the C example: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def binary() -> Path:
    missing = [tool for tool in ("gcc", "make", "apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"the C example needs {', '.join(missing)}")
    proc = subprocess.run(
        ["make", "-C", str(EXAMPLE), f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        _unavailable(f"make -C examples/c failed:\n{proc.stdout}\n{proc.stderr}")
    return BINARY


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle"))
    return bundle.model.parent


def check(binary: Path, d: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), str(d / "model.onnx"), str(d / "probes.json")], capture_output=True, text=True, timeout=600
    )


def test_c_reproduces_probe_outputs(binary: Path, bundle_dir: Path) -> None:
    proc = check(binary, bundle_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: 24 probes match"), proc.stdout
    print(proc.stdout.strip())


def test_c_fails_on_a_wrong_expected_value(binary: Path, bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path / "b")
    probes = json.loads((tmp_path / "b" / "probes.json").read_text())
    probes["expected"][5] += 0.5
    (tmp_path / "b" / "probes.json").write_text(json.dumps(probes))
    proc = check(binary, tmp_path / "b")
    assert proc.returncode == 1
    assert proc.stderr.startswith("check_probes: error: probe 5 xy=("), proc.stderr


def test_c_refuses_malformed_probes_and_a_missing_model(binary: Path, bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path / "b")
    probes = tmp_path / "b" / "probes.json"
    probes.write_text(probes.read_text()[:-20])  # truncated
    proc = check(binary, tmp_path / "b")
    assert proc.returncode == 1 and "malformed JSON" in proc.stderr, proc.stderr
    (tmp_path / "b" / "model.onnx").unlink()
    shutil.copy(bundle_dir / "probes.json", probes)
    proc = check(binary, tmp_path / "b")
    assert proc.returncode == 1 and "model.onnx" in proc.stderr, proc.stderr
