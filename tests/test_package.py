"""`circlefit package FORMAT --out DIR`: Triton and ORT packages against the graph and onnxruntime, and the
all-or-nothing write of every format (a failure leaves nothing under DIR; a missing extra is one line).

tritonclient (the dev extra) parses the Triton configuration and mlflow (the serve extra) writes MLflow
packages; without them those tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from circlefit.contract import sha256_hex
from circlefit.io import dumps_json
from circlefit.runtime import load_session, predict
from circlefit.verify import verify

from conftest import BIN, cli_imports_no_torch, env, require
from tiny_model import tiny_model

FORMATS = ("mlflow", "triton", "ort")
EXTRA = {"mlflow": "serve", "tritonclient.grpc": "dev"}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = tiny_model().export(tmp_path_factory.mktemp("bundle") / "export")
    return bundle.model.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "circlefit"), *args], capture_output=True, text=True, env=env(), timeout=300)


def package(fmt: str, model: Path, out: Path) -> subprocess.CompletedProcess[str]:
    if fmt == "mlflow":
        require("mlflow", EXTRA["mlflow"])
    return cli("package", fmt, "--model", str(model), "--out", str(out))


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("circlefit package: error: "), lines[0]
    return lines[0]


def nothing_left(parent: Path, out: Path) -> None:
    """No DIR, and no temp directory beside it."""
    assert not out.exists()
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")) == []


@pytest.fixture(scope="module")
def triton_repo(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    proc = package("triton", export_dir, out)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith(f"{out}: triton package of model sha256 ")
    return out


def graph_tensors(model: Path) -> dict[str, list[tuple[str, int, list[int | str]]]]:
    """The oracle: inputs and outputs (name, ONNX element type, dims) read with onnx from the file."""
    graph = onnx.load(str(model)).graph

    def one(v: onnx.ValueInfoProto) -> tuple[str, int, list[int | str]]:
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]

    return {"input": [one(v) for v in graph.input], "output": [one(v) for v in graph.output]}


def test_triton_config_parses_as_tritons_model_config_and_matches_the_graph(
    triton_repo: Path, export_dir: Path
) -> None:
    require("tritonclient.grpc", EXTRA["tritonclient.grpc"])
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = (triton_repo / "circlefit" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())  # an unknown field or enum raises
    assert (config.name, config.backend) == ("circlefit", "onnxruntime")
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
    graph = graph_tensors(export_dir / "model.onnx")
    for kind, declared in (("input", config.input), ("output", config.output)):
        assert len(declared) == len(graph[kind])
        for t, (name, elem_type, dims) in zip(declared, graph[kind], strict=True):
            assert elem_type == onnx.TensorProto.FLOAT and t.data_type == fp32
            assert isinstance(dims[0], str), dims  # the graph's batch dim: Triton's max_batch_size stands for it
            assert (t.name, list(t.dims)) == (name, dims[1:])
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):  # the parse is strict: a live control
        text_format.Parse(text.replace("max_batch_size", "max_batch_sise"), model_config_pb2.ModelConfig())


def test_triton_model_is_the_export_byte_for_byte(triton_repo: Path, export_dir: Path) -> None:
    version = triton_repo / "circlefit" / "1"
    assert (version / "model.onnx").read_bytes() == (export_dir / "model.onnx").read_bytes()
    load_session(version / "model.onnx")  # onnxruntime loads it (and checks it against the sidecar beside it)
    assert verify(version).sha256 == sha256_hex((export_dir / "model.onnx").read_bytes())
    assert sorted(p.name for p in triton_repo.iterdir()) == ["circlefit"]


def test_ort_outputs_equal_the_onnx_models(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ort"
    proc = package("ort", export_dir, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.ort").read_bytes()[4:8] == b"ORTM"  # the ORT format's FlatBuffers identifier
    manifest = json.loads((out / "model.ort.json").read_text())
    assert manifest["model"]["sha256"] == sha256_hex((out / "model.ort").read_bytes())
    assert manifest["source"]["sha256"] == sha256_hex((export_dir / "model.onnx").read_bytes())
    config = (out / "required_operators.config").read_text().splitlines()
    assert "# - model.ort" in config  # the packaged file, not the converter's temporary path
    ops = [line for line in config if not line.startswith("#")]
    assert ops and all(re.fullmatch(r"[\w.]+;\d+;[\w,]+", op) for op in ops), ops  # domain;opset;operators

    # model.ort has no sidecar of its own (model.json beside it is model.onnx's): model.ort.json holds its sha256
    converted = load_session(out / "model.ort", threads=1, verify_sidecar=False)
    original = load_session(export_dir / "model.onnx", threads=1)
    probes = np.asarray(json.loads((export_dir / "probes.json").read_text())["inputs"], dtype=np.float32)
    box = float(np.abs(probes).max())
    rows = np.random.default_rng(1).uniform(-box, box, size=(1_000_000, 2)).astype(np.float32)
    for xy in (probes, rows):
        # the same fused graph on the same kernels: equal, not merely close
        np.testing.assert_array_equal(predict(converted, xy), predict(original, xy))
    verify(out)


def test_every_format_refuses_a_tampered_model_and_writes_nothing(export_dir: Path, tmp_path: Path) -> None:
    bad = Path(shutil.copytree(export_dir, tmp_path / "bad"))
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model.onnx").write_bytes(bytes(data))
    for fmt in FORMATS:
        parent = tmp_path / fmt
        parent.mkdir()
        line = one_error_line(package(fmt, bad, parent / "out"))
        assert f"sha256 check failed: {bad / 'model.onnx'}: " in line
        nothing_left(parent, parent / "out")


def reorder_fields(data: bytes) -> bytes:
    """The same ModelProto with its first field (ir_version) moved to the end: another serializer's valid output,
    which onnx, parsing and writing it again, puts back in field order."""
    assert data[0] == 0x08  # field 1 (ir_version), a varint: its key byte, then the value's bytes
    i = 1
    while data[i] & 0x80:
        i += 1
    return data[i + 1 :] + data[: i + 1]


def rewrite_as_another_serializer(export: Path) -> None:
    model = export / "model.onnx"
    data = reorder_fields(model.read_bytes())
    assert (
        onnx.load_from_string(data) == onnx.load(str(model)) and onnx.load_from_string(data).SerializeToString() != data
    )
    model.write_bytes(data)
    probes = json.loads((export / "probes.json").read_text())
    probes["model_sha256"] = sha256_hex(data)
    (export / "probes.json").write_text(dumps_json(probes))
    side = json.loads((export / "model.json").read_text())
    side["model"] |= {"sha256": sha256_hex(data), "bytes": len(data)}
    side["probes"]["sha256"] = sha256_hex((export / "probes.json").read_bytes())
    (export / "model.json").write_text(dumps_json(side))


def test_a_failure_while_writing_leaves_nothing_under_dir(export_dir: Path, tmp_path: Path) -> None:
    """MLflow's save writes the whole directory, then the model turns out re-serialized: nothing may remain."""
    other = Path(shutil.copytree(export_dir, tmp_path / "other"))
    rewrite_as_another_serializer(other)
    assert verify(other).sha256 == sha256_hex((other / "model.onnx").read_bytes())  # a valid, verified model
    parent = tmp_path / "out"
    parent.mkdir()
    line = one_error_line(package("mlflow", other, parent / "pkg"))
    assert f"{parent / 'pkg'}: the mlflow package's model.onnx is not byte-identical to the verified" in line
    nothing_left(parent, parent / "pkg")
    (parent / "empty").mkdir()  # an existing empty DIR stays empty
    one_error_line(package("mlflow", other, parent / "empty"))
    assert list((parent / "empty").iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_non_empty_dir_is_refused_and_left_as_it_was(fmt: str, export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = one_error_line(package(fmt, export_dir, out))
    assert line.endswith(f"{out}: exists and is not empty; a package goes into a new or empty directory")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_mlflow_without_the_serve_extra_is_one_line_naming_the_install(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    code = (
        "import sys; sys.modules['mlflow'] = None; "  # `import mlflow` then fails as if it were not installed
        "from circlefit.cli import main; "
        f"sys.exit(main(['package', 'mlflow', '--model', {str(export_dir)!r}, '--out', {str(out)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    line = one_error_line(proc)
    assert line == (
        "circlefit package: error: mlflow packages need the serve extra (mlflow is not installed): "
        "pip install -e '.[serve]'"
    )
    nothing_left(tmp_path, out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_packaging_imports_no_torch(fmt: str, export_dir: Path, tmp_path: Path) -> None:
    if fmt == "mlflow":
        require("mlflow", EXTRA["mlflow"])
    cli_imports_no_torch(["package", fmt, "--model", str(export_dir), "--out", str(tmp_path / "pkg")])
