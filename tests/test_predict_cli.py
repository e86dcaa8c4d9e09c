"""`circlefit predict`: answers from the ONNX file alone (no torch), clear one-line errors otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from circlefit.runtime import load_session, predict

from conftest import BIN, env
from tiny_model import tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle"))
    return bundle.model


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "circlefit"), *args], input=stdin, capture_output=True, text=True, env=env(), cwd=cwd, timeout=600
    )


def rows(stdout: str) -> np.ndarray:
    lines = stdout.splitlines()
    assert lines[0] == "x,y,x2_plus_y2"
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def expected(model: Path, xy: list[list[float]]) -> np.ndarray:
    return predict(load_session(model), np.asarray(xy, dtype=np.float32))


def test_cli_does_not_import_torch(model: Path) -> None:
    code = (
        "import sys; from circlefit.cli import main; "
        f"rc = main(['predict', '--model', {str(model)!r}, '3', '4']); "
        "assert rc == 0, rc; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxscript')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("x,y,x2_plus_y2\n3.0,4.0,")


def test_points_as_arguments(model: Path) -> None:
    proc = cli("predict", "--model", str(model), "3", "4", "-1.5", "0.25", "0", "0")
    assert proc.returncode == 0, proc.stderr
    out = rows(proc.stdout)
    xy = [[3, 4], [-1.5, 0.25], [0, 0]]
    assert out[:, :2].tolist() == xy
    assert np.array_equal(out[:, 2].astype(np.float32), expected(model, xy))  # printed floats round-trip float32


def test_points_from_csv_file_and_stdin(model: Path, tmp_path: Path) -> None:
    text = "x,y\n1,2\n\n 10.5 , -3\n1e1,0\n"
    (tmp_path / "pts.csv").write_text(text)
    xy = [[1, 2], [10.5, -3], [10, 0]]
    for proc in (
        cli("predict", "--model", str(model), "--csv", str(tmp_path / "pts.csv")),
        cli("predict", "--model", str(model), "--csv", "-", stdin=text),
        cli("predict", "--model", str(model), stdin=text),
    ):
        assert proc.returncode == 0, proc.stderr
        assert np.array_equal(rows(proc.stdout)[:, 2].astype(np.float32), expected(model, xy))


def test_default_model_path_is_the_pipeline_output(model: Path, tmp_path: Path) -> None:
    (tmp_path / "data/export").mkdir(parents=True)
    shutil.copytree(model.parent, tmp_path / "data/export", dirs_exist_ok=True)
    proc = cli("predict", "1", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def _corrupt(model: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(model.read_bytes()[:200])
    return bad


def _sidecar_mismatch(model: Path, tmp_path: Path) -> Path:
    m = tmp_path / "model.onnx"
    data = bytearray(model.read_bytes())
    weight = onnx.load(str(model)).graph.initializer[0].raw_data
    data[data.find(weight)] ^= 1  # one flipped bit, in the lowest byte of a weight: still a loadable model
    m.write_bytes(bytes(data))
    shutil.copy(model.with_suffix(".json"), tmp_path / "model.json")
    return m


def _foreign(model: Path, tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("points", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["points"], ["out"])], "g", [x], [y])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["3", "4", "5"], None, "points come as pairs 'x y'; got 3 numbers"),
        (["3", "four"], None, "argument 2: 'four' is not a number"),
        (["nan", "1"], None, "argument 1: 'nan' is not a finite float32 number"),
        (["--csv", "-"], "x,y\n1,2\n3,abc\n", "stdin, line 3: 'abc' is not a number"),
        (["--csv", "-"], "1,2,3\n", "stdin, line 1: expected 2 values 'x,y', got 3: '1,2,3'"),
        (["--csv", "-"], "\n", "stdin: no points"),
        (["--csv", "missing.csv"], None, "missing.csv: file not found"),
        (["--csv", "-", "1", "2"], None, "either as arguments or with --csv, not both"),
    ],
    ids=["odd_count", "non_numeric", "nan", "csv_non_numeric", "csv_three_columns", "csv_empty", "csv_missing", "both"],
)
def test_bad_input_one_line_error(model: Path, args: list[str], stdin: str | None, message: str) -> None:
    proc = cli("predict", "--model", str(model), *args, stdin=stdin)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("circlefit predict: error: "), proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m, t: t / "nope.onnx", "nope.onnx: model file not found"),
        (_corrupt, "corrupt.onnx: not a loadable ONNX model (["),
        (_sidecar_mismatch, "does not match model.json"),
        (_foreign, "foreign.onnx: not a circlefit model: it maps 'points' tensor(float) ['n', 3]"),
    ],
    ids=["missing", "corrupt", "sidecar_mismatch", "not_circlefit"],
)
def test_bad_model_one_line_error(model: Path, tmp_path: Path, make, message: str) -> None:
    proc = cli("predict", "--model", str(make(model, tmp_path)), "1", "2")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("circlefit predict: error: "), proc.stderr
    assert message in proc.stderr


def test_sidecar_mismatch_is_checked_only_when_a_sidecar_is_beside(model: Path, tmp_path: Path) -> None:
    """The same flipped bit without a sidecar loads: the sidecar is what makes corruption detectable."""
    flipped = _sidecar_mismatch(model, tmp_path)
    (tmp_path / "model.json").unlink()
    assert cli("predict", "--model", str(flipped), "1", "2").returncode == 0
