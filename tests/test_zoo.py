"""The ONNX Model Zoo layout beside the model (test_data_set_0/), consumed the way ONNX's own tools consume it."""

from __future__ import annotations

import io
import json
import shutil
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime.backend
import pytest
from onnx import numpy_helper
from onnx.backend.test import runner as backend_runner
from onnx.backend.test.case.test_case import TestCase
from onnx.backend.test.runner import Runner

from circlefit.contract import TEST_DATA_SET
from circlefit.export.zoo import read_test_data_set

from tiny_model import tiny_model


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle"))
    return bundle.model.parent


def _probes(d: Path) -> dict[str, Any]:
    return json.loads((d / "probes.json").read_text())


def _backend_suite(model_dir: Path, rtol: float, atol: float) -> unittest.TestResult:
    """ONNX's backend test runner on `model_dir` (model.onnx + test_data_set_*), with onnxruntime's backend."""
    with pytest.MonkeyPatch.context() as mp:  # not onnx's own 3,000 node tests: they take 35 s to load
        mp.setattr(backend_runner, "load_model_tests", lambda **_: [])
        runner = Runner(onnxruntime.backend, __name__)
    case = TestCase(
        name="test_circlefit",
        model_name="circlefit",
        url=None,
        model_dir=str(model_dir),
        model=None,
        data_sets=None,
        kind="real",
        rtol=rtol,
        atol=atol,
    )
    runner._add_model_test(case, "Zoo")  # how Runner adds the Zoo's "real" models; there is no public hook
    suite = runner.test_suite
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    assert result.testsRun >= 1
    return result


def _tolerance(probes: dict[str, Any]) -> tuple[float, float]:
    """probes.json's rule |got - want| <= rtol * (|want| + offset) is numpy's allclose with atol = rtol * offset."""
    tol = probes["tolerance"]
    return float(tol["rtol"]), float(tol["rtol"]) * float(tol["offset"])


def test_test_data_set_holds_the_probes_as_tensor_protos(bundle_dir: Path) -> None:
    probes = _probes(bundle_dir)
    graph = onnx.load(str(bundle_dir / "model.onnx")).graph
    assert sorted(p.name for p in (bundle_dir / TEST_DATA_SET).iterdir()) == ["input_0.pb", "output_0.pb"]
    [(in_name, xy)], [(out_name, want)] = read_test_data_set(bundle_dir / TEST_DATA_SET)
    assert (in_name, out_name) == (graph.input[0].name, graph.output[0].name)
    n = probes["count"]
    assert xy.dtype == want.dtype == np.float32 and xy.shape == (n, 2) and want.shape == (n, 1)
    assert np.array_equal(xy, np.asarray(probes["inputs"], dtype=np.float32))
    assert np.array_equal(want[:, 0], np.asarray(probes["expected"], dtype=np.float32))
    tensor = onnx.load_tensor(str(bundle_dir / TEST_DATA_SET / "input_0.pb"))  # onnx's own loader reads it too
    assert tensor.name == "xy" and list(tensor.dims) == [n, 2]


def test_onnx_backend_runner_passes_with_onnxruntime_backend(bundle_dir: Path) -> None:
    result = _backend_suite(bundle_dir, *_tolerance(_probes(bundle_dir)))
    assert result.wasSuccessful(), result.failures + result.errors


def test_onnx_backend_runner_fails_on_a_wrong_expected_output(bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path / "b")
    out = tmp_path / "b" / TEST_DATA_SET / "output_0.pb"
    tensor = onnx.load_tensor(str(out))
    want = numpy_helper.to_array(tensor).copy()
    want[5, 0] += 0.5
    out.write_bytes(numpy_helper.from_array(want, tensor.name).SerializeToString())
    result = _backend_suite(tmp_path / "b", *_tolerance(_probes(bundle_dir)))
    assert not result.wasSuccessful()
    assert "Mismatched elements: 1 / 24" in str(result.failures), result.failures


def test_numpy_helper_and_onnxruntime_within_the_probes_tolerance(bundle_dir: Path) -> None:
    probes = _probes(bundle_dir)
    session = ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs, outputs = read_test_data_set(bundle_dir / TEST_DATA_SET)
    got = session.run([name for name, _ in outputs], dict(inputs))
    rtol, atol = _tolerance(probes)
    for g, (_, want) in zip(got, outputs, strict=True):
        assert g.shape == want.shape
        assert (np.abs(g.astype(np.float64) - want) <= atol + rtol * np.abs(want.astype(np.float64))).all()
