"""OpenVINO and tract (the `runtimes` extra) run the exported model: probes and held-out parity sets in tolerance.

Neither is a dependency of circlefit (`circlefit/` never imports them): install them with
`pip install -e ".[runtimes]"`. Without them the tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from circlefit.export.bundle import expected_outputs
from circlefit.export.parity import parity_inputs

from conftest import REPO, require
from tiny_model import Tiny, tiny_model

Runner = Callable[[np.ndarray], np.ndarray]


def openvino_runner(model: Path) -> Runner:
    ov = require("openvino", "runtimes")
    core = ov.Core()
    # f32 explicitly: on CPUs with AVX512_BF16 the CPU plugin's default inference precision is bf16.
    compiled = core.compile_model(core.read_model(str(model)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    return lambda xy: np.asarray(compiled([xy])[0])


def tract_runner(model: Path) -> Runner:
    tract = require("tract", "runtimes")
    runnable = tract.onnx().load(str(model)).into_model().into_runnable()
    return lambda xy: runnable.run([xy])[0].to_numpy()


RUNTIMES = {"openvino": openvino_runner, "tract": tract_runner}


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    return tiny_model()


@pytest.fixture(scope="module")
def bundle_dir(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny.export(tmp_path_factory.mktemp("bundle"))
    return bundle.model.parent


@pytest.fixture(scope="module")
def probes(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((bundle_dir / "probes.json").read_text())


@pytest.fixture(scope="module")
def parity_sets(tiny: Tiny) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The export's parity sets (held-out test split, ood ring, random box, batches 0/1/7/large) and the reference."""
    cfg = tiny.params.export
    rng = np.random.default_rng(cfg.seed)
    sets = parity_inputs(tiny.splits(), tiny.ds.train_radius, cfg.parity_random, cfg.parity_large_batch, rng)
    expected = expected_outputs(tiny.model, sets)
    return {name: (xy, expected[name]) for name, xy in sets.items()}


def _check(got: np.ndarray, xy: np.ndarray, want: np.ndarray, tol: dict[str, Any], what: str) -> float:
    """The probes' rule |got - want| <= rtol * (|want| + offset), read from probes.json; returns the max |diff|."""
    assert got.dtype == np.float32 and got.shape == (len(xy), 1), f"{what}: {got.dtype} {got.shape}"
    diff = np.abs(got[:, 0].astype(np.float64) - np.asarray(want, dtype=np.float64))
    bound = tol["rtol"] * (np.abs(np.asarray(want, dtype=np.float64)) + tol["offset"])
    bad = ~(diff <= bound)  # NaN fails too
    if bad.any():
        i = int(np.argmax(np.where(np.isnan(diff), np.inf, diff / bound)))
        pytest.fail(f"{what}: {int(bad.sum())} of {len(xy)} beyond tolerance; worst xy={xy[i].tolist()}")
    return float(diff.max(initial=0.0))


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_runtime_reproduces_the_probes(runtime: str, bundle_dir: Path, probes: dict[str, Any]) -> None:
    run = RUNTIMES[runtime](bundle_dir / "model.onnx")
    xy = np.asarray(probes["inputs"], dtype=np.float32)
    worst = _check(run(xy), xy, np.asarray(probes["expected"]), probes["tolerance"], f"{runtime} probes")
    print(f"{runtime} {importlib.metadata.version(runtime)}: {len(xy)} probes, max |diff| {worst:.3g}")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_runtime_passes_the_parity_sets(
    runtime: str, bundle_dir: Path, probes: dict[str, Any], parity_sets: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    run = RUNTIMES[runtime](bundle_dir / "model.onnx")
    assert {"test", "ood", "random", "batch_0", "batch_1", "batch_large"} <= set(parity_sets)
    for name, (xy, want) in parity_sets.items():
        _check(run(xy), xy, want, probes["tolerance"], f"{runtime} set {name!r}")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_wrong_expected_value_is_caught(runtime: str, bundle_dir: Path, probes: dict[str, Any]) -> None:
    """The control: the same comparison fails when one expected output is off by 0.5."""
    run = RUNTIMES[runtime](bundle_dir / "model.onnx")
    xy = np.asarray(probes["inputs"], dtype=np.float32)
    want = np.asarray(probes["expected"], dtype=np.float64).copy()
    want[5] += 0.5
    with pytest.raises(pytest.fail.Exception, match=r"1 of 24 beyond tolerance"):
        _check(run(xy), xy, want, probes["tolerance"], runtime)


def test_circlefit_never_imports_openvino_or_tract() -> None:
    code = (
        "import importlib, pkgutil, sys, circlefit\n"
        "for m in pkgutil.walk_packages(circlefit.__path__, 'circlefit.'):\n"
        "    if m.name != 'circlefit.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('openvino', 'tract')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
