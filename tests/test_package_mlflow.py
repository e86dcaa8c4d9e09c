"""`circlefit package mlflow`: what MLflow loads answers as onnxruntime does, the package is the same bytes
every time, and `mlflow models serve` answers requests and refuses malformed ones.

Needs the serve extra (mlflow-skinny, pandas, uvicorn, fastapi): without it these tests skip, except in
CI (CI=true), where they fail.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from circlefit.contract import INPUT_NAME, OUTPUT_NAME, sha256_hex
from circlefit.package import mlflow as mlflow_package
from circlefit.runtime import load_session
from circlefit.verify import verify

from conftest import REPO, env, require
from tiny_model import tiny_model


def require_serve() -> ModuleType:
    """mlflow's pyfunc, with what `mlflow models serve --env-manager local` needs beside it (the serve extra)."""
    for module in ("pandas", "uvicorn", "fastapi"):
        require(module, "serve")
    return require("mlflow.pyfunc", "serve")


def load_bench(name: str) -> ModuleType:
    """A module of bench/ (the server helper the serving benchmark uses too)."""
    spec = importlib.util.spec_from_file_location(f"circlefit_bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle") / "export")
    return bundle.model.parent


@pytest.fixture(scope="module")
def pkg(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_serve()
    out = tmp_path_factory.mktemp("mlflow") / "pkg"
    mlflow_package.package(export_dir, out)
    return out


def test_pyfunc_answers_exactly_as_onnxruntime_on_the_onnx(pkg: Path, export_dir: Path) -> None:
    pyfunc = require_serve()
    model = pyfunc.load_model(str(pkg))
    session = load_session(export_dir / "model.onnx", threads=mlflow_package.THREADS)  # the package's setting
    probes = np.asarray(json.loads((export_dir / "probes.json").read_text())["inputs"], dtype=np.float32)
    rows = np.random.default_rng(0).uniform(-40, 40, size=(100_000, 2)).astype(np.float32)
    for xy in (probes, rows):
        got = model.predict(xy)[OUTPUT_NAME]  # the onnx flavor answers with a dict keyed by output name
        want = session.run([OUTPUT_NAME], {INPUT_NAME: xy})[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_the_package_overrides_what_mlflow_defaults_get_wrong(pkg: Path, export_dir: Path) -> None:
    sha = sha256_hex((export_dir / "model.onnx").read_bytes())
    assert (pkg / "model.onnx").read_bytes() == (export_dir / "model.onnx").read_bytes()  # no external .data
    assert not list(pkg.glob("*.data"))
    assert verify(pkg).sha256 == sha
    meta: dict[str, Any] = yaml.safe_load((pkg / "MLmodel").read_text())
    assert meta["model_uuid"] == sha[:32] and meta["utc_time_created"] == mlflow_package.CREATED
    onnx_flavor = meta["flavors"]["onnx"]
    assert onnx_flavor["providers"] == ["CPUExecutionProvider"]
    assert onnx_flavor["onnx_session_options"] == {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
    assert json.loads(meta["signature"]["inputs"]) == [
        {"name": INPUT_NAME, "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}
    ]
    assert json.loads(meta["signature"]["outputs"]) == [
        {"name": OUTPUT_NAME, "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}
    ]
    assert json.loads((pkg / "input_example.json").read_text()) == mlflow_package.EXAMPLE
    assert [r.split("==")[0] for r in (pkg / "requirements.txt").read_text().split()] == list(
        mlflow_package.REQUIREMENTS
    )


def test_two_packages_of_one_model_are_the_same_bytes(pkg: Path, export_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    mlflow_package.package(export_dir / "model.onnx", again)
    same = filecmp.dircmp(pkg, again)
    assert same.left_only == same.right_only == same.diff_files == [] and same.common_dirs == []
    _, mismatch, errors = filecmp.cmpfiles(pkg, again, same.common_files, shallow=False)
    assert mismatch == errors == []


@pytest.mark.slow
def test_mlflow_models_serve_answers_and_refuses_malformed_bodies(history: Path, tmp_path: Path) -> None:
    """The pipeline's own export (small params), packaged and served as a user would.

    The served (3, 4) must equal onnxruntime on the .onnx within the export's tolerance (the sidecar's
    rule: the server runs the same file through the same runtime). Its distance to the exact 25 is the
    model's error, not a runtime's: it must be within the model's own max |error| on its test split, which
    the sidecar records; the runtime tolerance (rtol 1e-5 of ~300) is far below a fitted model's error.
    """
    require_serve()
    serving = load_bench("serving")
    export = history / "data" / "export"
    out = tmp_path / "pkg"
    mlflow_package.package(export, out)
    checked = verify(out)
    want = float(
        load_session(export / "model.onnx", threads=1).run(None, {INPUT_NAME: np.array([[3, 4]], np.float32)})[0][0, 0]
    )
    model_error = json.loads((export / "model.json").read_text())["metrics"]["test"]["max_abs_err"]

    with serving.MlflowServer(out) as server:
        status, body = serving.post(server.port, b'{"inputs": [[3, 4]]}')
        assert status == 200, body
        served = json.loads(body)["predictions"][OUTPUT_NAME][0][0]
        assert abs(served - want) <= float(checked.probes.tolerance.bound(np.array([want]))[0]), (served, want)
        assert abs(served - 25.0) <= model_error, (served, model_error)

        for malformed in (b"{not json", b'{"inputs": [[1, 2, 3]]}', b'{"inputs": [["a", "b"]]}', b'{"rows": 1}'):
            status, body = serving.post(server.port, malformed)
            assert 400 <= status < 500, (malformed, status, body)
            assert json.loads(body)["message"], body  # a message saying what is wrong
        assert server.proc is not None
        group = server.proc.pid
        assert serving.live_members(group)  # a live control: the server's processes are seen while it runs
    assert serving.live_members(group) == []  # stopped: mlflow and uvicorn are gone


@pytest.mark.slow
def test_the_serving_benchmark_runs(history: Path, tmp_path: Path) -> None:
    """bench/serve.py end to end, one short round, so it does not rot between runs (its numbers are not checked)."""
    require_serve()
    out = tmp_path / "serve.json"
    cmd = [sys.executable, str(REPO / "bench" / "serve.py"), "--model", str(history / "data/export/model.onnx")]
    cmd += ["--rounds", "1", "--n1", "5", "--nbig", "1", "--out", str(out)]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    servers = {"model", "floor", "model_default_threads", "in_process_model", "in_process_floor"}
    assert set(result["medians"]) == servers
    assert all(v > 0 for d in result["medians"].values() for v in d.values())
    assert result["machine"]["cpu"] and set(result["ratios"]) == {
        "served_model_over_served_floor",
        "default_threads_over_served_floor",
        "served_over_in_process_model",
    }
