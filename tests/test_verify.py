"""`circlefit verify PATH`: a good export passes in one line; each broken one fails its own check, naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from circlefit.contract import sha256_hex
from circlefit.errors import VerifyError
from circlefit.export.parity import Tolerance
from circlefit.io import dumps_json
from circlefit.verify import verify

from conftest import BIN, cli_imports_no_torch, env
from tiny_model import tiny_model


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle") / "export")
    return bundle.model.parent


@pytest.fixture
def copy(export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the export directory to break."""
    return Path(shutil.copytree(export_dir, tmp_path / "export"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "circlefit"), *args], capture_output=True, text=True, env=env(), timeout=120)


def failed(path: Path, check: str, file: Path) -> str:
    """Run `circlefit verify PATH`, expect exit 1 and one stderr line naming `check` and `file`; return the line."""
    proc = cli("verify", str(path))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"circlefit verify: error: {check} check failed: {file}: "), lines[0]
    return lines[0]


def rehash_probes(export: Path) -> None:
    """After editing probes.json: record its new sha256 in the sidecar, so only the parity check can object."""
    side = json.loads((export / "model.json").read_text())
    side["probes"]["sha256"] = sha256_hex((export / "probes.json").read_bytes())
    (export / "model.json").write_text(dumps_json(side))


@pytest.mark.parametrize("target", ["dir", "file"])
def test_a_good_export_passes_in_one_line(export_dir: Path, target: str) -> None:
    path = export_dir if target == "dir" else export_dir / "model.onnx"
    proc = cli("verify", str(path))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    sha = sha256_hex((export_dir / "model.onnx").read_bytes())
    count = len(json.loads((export_dir / "probes.json").read_text())["inputs"])
    assert line.startswith(f"{export_dir / 'model.onnx'}: ok: sha256 {sha[:12]}… matches model.json; {count} probes")
    assert "within the export's tolerance" in line and "onnxruntime" in line


def test_the_result_records_what_was_checked(export_dir: Path) -> None:
    probes = json.loads((export_dir / "probes.json").read_text())
    result = verify(export_dir)
    assert result.sha256 == sha256_hex((export_dir / "model.onnx").read_bytes())
    assert len(result.probes.xy) == probes["count"] and 0.0 <= result.worst <= 1.0
    assert result.probes.file == export_dir / "probes.json"
    tol = probes["tolerance"]
    assert result.probes.tolerance == Tolerance(tol["rtol"], tol["label_mean"], tol["label_std"])


def test_a_tampered_byte_fails_the_sha256_check(copy: Path) -> None:
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    line = failed(copy, "sha256", model)
    assert "differs from model.json's" in line


def test_a_missing_sidecar_fails_the_sidecar_check(copy: Path) -> None:
    (copy / "model.json").unlink()
    line = failed(copy / "model.onnx", "sidecar", copy / "model.json")
    assert "missing" in line
    failed(copy, "sidecar", copy / "model.json")  # the directory form finds the lone model, then its sidecar


def test_probes_that_disagree_fail_the_parity_check(copy: Path) -> None:
    probes = json.loads((copy / "probes.json").read_text())
    tol = probes["tolerance"]
    tolerance = Tolerance(tol["rtol"], tol["label_mean"], tol["label_std"])
    k = len(probes["expected"]) // 2
    expected = probes["expected"][k]
    # the runtime is within 1 bound of the old value, so 3 bounds away it is more than 2 bounds off the new one
    probes["expected"][k] = expected + 3 * float(tolerance.bound(np.array([expected]))[0])
    (copy / "probes.json").write_text(dumps_json(probes))
    rehash_probes(copy)
    x, y = probes["inputs"][k]
    line = failed(copy, "parity", copy / "model.onnx")
    assert f"1 of {len(probes['inputs'])} probes (probes.json) out of the export's tolerance" in line
    assert f"worst xy=({float(np.float32(x))!r}, {float(np.float32(y))!r})" in line


def test_probes_edited_without_the_sidecar_fail_the_probes_check(copy: Path) -> None:
    probes = json.loads((copy / "probes.json").read_text())
    probes["expected"][0] += 1.0
    (copy / "probes.json").write_text(dumps_json(probes))
    line = failed(copy, "probes", copy / "probes.json")
    assert "probes.sha256" in line


def test_probes_of_another_model_fail_the_probes_check(copy: Path) -> None:
    probes = json.loads((copy / "probes.json").read_text())
    probes["model_sha256"] = "0" * 64
    (copy / "probes.json").write_text(dumps_json(probes))
    rehash_probes(copy)
    failed(copy, "probes", copy / "probes.json")


def test_a_directory_with_two_models_asks_which(copy: Path) -> None:
    shutil.copy(copy / "model.onnx", copy / "other.onnx")
    shutil.copy(copy / "model.json", copy / "other.json")
    line = failed(copy, "model", copy)
    assert "2 models here (model.onnx, other.onnx)" in line
    with pytest.raises(VerifyError) as e:
        verify(copy / "missing.onnx")
    assert (e.value.check, e.value.path) == ("model", copy / "missing.onnx")


def test_verify_imports_no_torch(export_dir: Path) -> None:
    cli_imports_no_torch(["verify", str(export_dir)])
