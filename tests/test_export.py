"""The export library: a verified, self-contained, self-describing ONNX bundle; parity that catches tampering."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from circlefit.config import ConfigError
from circlefit.contract import INPUT_NAME
from circlefit.errors import PredictError
from circlefit.export.bundle import Bundle, check_stats, write_verified
from circlefit.export.graph import HASHED_SECTIONS, annotate, export_onnx, params_digest, provenance, strip_metadata
from circlefit.export.parity import ParityError, Tolerance, parity_inputs
from circlefit.io import DataError
from circlefit.runtime import CHUNK_ROWS, load_session, predict, run

from conftest import REPO
from tiny_model import Tiny, tiny_model


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    return tiny_model()


@pytest.fixture(scope="module")
def proto(tiny: Tiny) -> onnx.ModelProto:
    """One annotated export; tests that change it take a copy."""
    proto = export_onnx(tiny.model, 18)
    annotate(proto, provenance(tiny.stats, tiny.params, tiny.ds.train_radius, {}))
    return proto


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


@pytest.fixture(scope="module")
def exported(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, dict]:
    return tiny.export(tmp_path_factory.mktemp("bundle"))


def test_bundle_files_sidecar_and_metadata(tiny: Tiny, exported: tuple[Bundle, dict]) -> None:
    bundle, sidecar = exported
    data = bundle.model.read_bytes()
    assert sorted(p.name for p in bundle.model.parent.iterdir()) == [
        "README.md",
        "model.json",
        "model.onnx",
        "probes.json",
        "test_data_set_0",
    ]
    assert json.loads(bundle.sidecar.read_text()) == sidecar
    assert sidecar["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sidecar["model"]["bytes"] == len(data)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 18)] == [("", sidecar["model"]["opset"])]
    assert proto.ir_version == sidecar["model"]["ir_version"] == 8
    assert sidecar["inputs"] == [{"name": "xy", "dtype": "float32", "shape": ["batch", 2]}]
    assert sidecar["outputs"] == [{"name": "x2_plus_y2", "dtype": "float32", "shape": ["batch", 1]}]
    assert proto.producer_name == "circlefit" and proto.model_version == 1 and "x² + y²" in proto.doc_string
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["circlefit.normalization"])["mean"] == list(tiny.stats.mean)
    assert props["circlefit.params_sha256"] == params_digest(tiny.params) == sidecar["params_sha256"]
    assert sorted(json.loads(props["circlefit.params"])) == sorted(HASHED_SECTIONS)
    assert sidecar["normalization"] == json.loads(json.dumps(tiny.stats.to_json()))
    assert sidecar["metrics"] == {"test": {"rmse": 1.0}}
    assert all(len(n.metadata_props) == 0 and not n.doc_string for n in proto.graph.node)
    assert not proto.graph.metadata_props and not any(v.metadata_props for v in proto.graph.input)
    assert str(REPO).encode() not in data and b"stack_trace" not in data


def test_parity_summary_covers_every_set_and_both_runtimes(tiny: Tiny, exported: tuple[Bundle, dict]) -> None:
    parity = exported[1]["parity"]
    cfg = tiny.params.export
    sizes = {"test": len(tiny.ds.test), "ood": len(tiny.ds.ood), "random": cfg.parity_random}
    sizes |= {"batch_0": 0, "batch_1": 1, "batch_7": 7, "batch_large": cfg.parity_large_batch, "probes": cfg.probes}
    assert parity["sets"] == sizes
    assert sorted(parity["runtimes"]) == ["onnx.reference", "onnxruntime", "pytorch"]
    assert parity["runtimes"]["onnxruntime"]["version"] == ort.__version__
    assert parity["runtimes"]["pytorch"]["version"] == torch.__version__
    assert "float64" in parity["expected"] and parity["tolerance"]["rtol"] == cfg.rtol
    for r in parity["runtimes"].values():  # portable: a verdict and the bound it met, no machine-specific maxima
        assert r == {"version": r["version"], "points": sum(sizes.values()), "verdict": "within tolerance"}


def test_probes_reproduce_with_onnxruntime(exported: tuple[Bundle, dict]) -> None:
    bundle, sidecar = exported
    probes = json.loads(bundle.probes.read_text())
    assert probes["model_sha256"] == sidecar["model"]["sha256"] and probes["count"] == len(probes["inputs"]) == 24
    got = predict(load_session(bundle.model), np.asarray(probes["inputs"], dtype=np.float32))
    want = np.asarray(probes["expected"])
    tol = probes["tolerance"]
    assert (np.abs(got - want) <= tol["rtol"] * (np.abs(want) + tol["offset"])).all()
    xy = np.asarray(probes["inputs"])
    assert probes["exact"] == (xy[:, 0] ** 2 + xy[:, 1] ** 2).tolist()
    assert probes["inputs"][0] == [0.0, 0.0]


def test_model_copied_alone_elsewhere_loads(exported: tuple[Bundle, dict], tmp_path: Path) -> None:
    bundle, _ = exported
    alone = tmp_path / "elsewhere" / "renamed.onnx"
    alone.parent.mkdir()
    shutil.copy(bundle.model, alone)
    proto = onnx.load(str(alone))  # fails if any tensor points at external data
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    xy = np.array([[3, 4], [-1, 2]], dtype=np.float32)
    assert np.array_equal(predict(load_session(alone), xy), predict(load_session(bundle.model), xy))


@pytest.fixture(scope="module")
def session(exported: tuple[Bundle, dict]) -> ort.InferenceSession:
    return load_session(exported[0].model)


@pytest.mark.parametrize(
    ("xy", "raw_error", "our_error"),
    [
        (
            np.zeros((3, 2), np.float64),
            r"Actual: \(tensor\(double\)\) , expected: \(tensor\(float\)\)",
            "must be float32",
        ),
        (
            np.zeros((3, 3), np.float32),
            r"invalid dimensions for input: xy.*index: 1 Got: 3 Expected: 2",
            r"shape \[N, 2\]",
        ),
        (np.zeros(2, np.float32), r"Invalid rank for input: xy Got: 1 Expected: 2", r"got \[2\]"),
    ],
    ids=["float64", "N_by_3", "rank_1"],
)
def test_input_contract_errors(session: ort.InferenceSession, xy: np.ndarray, raw_error: str, our_error: str) -> None:
    with pytest.raises(Exception, match=re.compile(raw_error, re.S)):  # the file's own contract, in plain onnxruntime
        session.run(None, {INPUT_NAME: xy})
    with pytest.raises(PredictError, match=our_error):
        predict(session, xy)


def test_wrong_input_name_errors(session: ort.InferenceSession) -> None:
    xy = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match=r"Required inputs \(\['xy'\]\) are missing"):
        session.run(None, {"points": xy})
    with pytest.raises(PredictError, match="missing input 'xy'"):
        run(session, {"points": xy})
    with pytest.raises(PredictError, match="unknown input 'points'"):
        run(session, {"xy": xy, "points": xy})


def test_empty_batch_and_non_finite_inputs(session: ort.InferenceSession) -> None:
    """What the README promises: an empty batch gives [0, 1]; NaN or ±Inf in a row gives NaN for that row."""
    assert session.run(None, {INPUT_NAME: np.zeros((0, 2), np.float32)})[0].shape == (0, 1)
    xy = np.array([[np.nan, 1], [1, np.nan], [np.inf, 0], [0, -np.inf], [3, 4]], dtype=np.float32)
    out = predict(session, xy)
    assert np.isnan(out[:4]).all() and np.isfinite(out[4])


def test_large_inputs_run_in_chunks_with_the_same_result(session: ort.InferenceSession) -> None:
    """predict() splits long inputs into CHUNK_ROWS-row calls (cache-sized); the model is row-wise."""
    xy = np.random.default_rng(3).uniform(-25, 25, (3 * CHUNK_ROWS + 5, 2)).astype(np.float32)
    one_call = session.run(None, {INPUT_NAME: xy})[0][:, 0]
    assert np.array_equal(predict(session, xy), one_call)
    assert np.array_equal(predict(session, xy, chunk_rows=7), one_call)  # last chunk short
    assert run(session, {INPUT_NAME: xy}, chunk_rows=1).shape == (xy.shape[0], 1)
    with pytest.raises(PredictError, match="chunk_rows must be a positive number of rows, got 0"):
        predict(session, xy, chunk_rows=0)


def _worst_named(message: str) -> tuple[str, int, tuple[float, float]]:
    m = re.search(r"of set '(\w+)'; worst input xy=\(([^,]+), ([^)]+)\) \(row (\d+)\)", message)
    assert m, message
    return m[1], int(m[4]), (float(m[2]), float(m[3]))


def _small_sets(tiny: Tiny) -> dict[str, np.ndarray]:
    sets = parity_inputs(tiny.splits(), tiny.ds.train_radius, 64, 256, np.random.default_rng(1))
    return sets | {"probes": sets["test"][:8]}


@pytest.mark.parametrize("where", ["torch_weight", "onnx_initializer"])
def test_tampered_weight_fails_parity_names_worst_input_and_leaves_nothing(
    tiny: Tiny, proto: onnx.ModelProto, tmp_path: Path, where: str
) -> None:
    proto = _copy(proto)
    model = copy.deepcopy(tiny.model)
    if where == "torch_weight":  # PyTorch changes after the export: the reference no longer matches the file
        with torch.no_grad():
            model.net.layers[0].weight[3, 1] += 0.01
    else:  # the file changes after the export
        init = next(
            t for t in proto.graph.initializer if t.name == "layers.2.bias"
        )  # the output layer (label stats folded in)
        bias = onnx.numpy_helper.to_array(init) + np.float32(0.01)
        init.CopyFrom(onnx.numpy_helper.from_array(bias, init.name))
    out = tmp_path / "out"
    bundle = Bundle(model=out / "model.onnx", probes=out / "probes.json")
    out.mkdir()
    for stale in (bundle.model, bundle.sidecar, bundle.probes, bundle.card):  # an earlier run's must not survive
        stale.write_text("stale")
    bundle.test_data_set.mkdir()
    (bundle.test_data_set / "input_0.pb").write_text("stale")
    sets = _small_sets(tiny)
    tol = Tolerance(1e-5, tiny.stats.mean[2], tiny.stats.std[2])
    with pytest.raises(ParityError) as info:
        write_verified(proto, model, sets, tol, bundle, None)
    assert list(out.iterdir()) == []  # no model, sidecar, probes, test data set, card or temp directory left
    assert "no model was written" in str(info.value) and "\n" not in str(info.value)

    # The error names the input with the largest |diff| / tolerance, recomputed here independently.
    name, row, xy = _worst_named(str(info.value))
    assert tuple(map(float, sets[name][row])) == xy
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ratios = {}
    with torch.no_grad():
        for set_name, arr in sets.items():
            if len(arr):
                ref = model(torch.from_numpy(arr)).numpy()[:, 0]
                diff = np.abs(sess.run(None, {INPUT_NAME: arr})[0][:, 0].astype(np.float64) - ref)
                ratios[set_name] = diff / tol.bound(ref)
    best = max(ratios, key=lambda k: ratios[k].max())
    assert (name, row) == (best, int(np.argmax(ratios[best])))


def test_untampered_write_verified_passes(tiny: Tiny, proto: onnx.ModelProto, tmp_path: Path) -> None:
    """The control for the tamper test: same sets, same tolerance, no change → the bundle is written."""
    bundle = Bundle(model=tmp_path / "model.onnx", probes=tmp_path / "probes.json")
    tol = Tolerance(1e-5, tiny.stats.mean[2], tiny.stats.std[2])
    sidecar = write_verified(_copy(proto), tiny.model, _small_sets(tiny), tol, bundle, None)
    assert bundle.model.is_file() and bundle.sidecar.is_file() and sidecar["parity"]["runtimes"]


def test_opset_is_exactly_the_one_asked_for(tiny: Tiny) -> None:
    proto = export_onnx(tiny.model, 14)  # the lowest the exporter can write (the schema's floor)
    assert {o.domain: o.version for o in proto.opset_import} == {"": 14}
    assert proto.ir_version == helper.find_min_ir_version_for(list(proto.opset_import)) == 7
    with pytest.raises(ConfigError, match=r"params.yaml: export.opset 13 cannot be produced .* \(got 18\)"):
        export_onnx(tiny.model, 13)  # torch converts from 18 and has no way down to 13: it says nothing


def test_the_supported_exporter_writes_a_folded_graph_and_warns_of_nothing(tiny: Tiny) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        proto = export_onnx(tiny.model, 18)
    assert [str(w.message) for w in seen if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm"]
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not proto.functions and {o.domain for o in proto.opset_import} == {""}


def test_stale_stats_are_refused(tiny: Tiny) -> None:
    model = copy.deepcopy(tiny.model)
    with torch.no_grad():
        model.label_mean += 1.0
    with pytest.raises(DataError, match=r"w.safetensors: buffer label_mean .* differs from s.json"):
        check_stats(model, tiny.stats, "w.safetensors", "s.json")
    check_stats(tiny.model, tiny.stats, "w.safetensors", "s.json")


def test_strip_metadata_reaches_functions_and_subgraphs() -> None:
    def tagged_node(*args, **kwargs):
        node = helper.make_node(*args, **kwargs)
        node.metadata_props.add(key="pkg.torch.onnx.stack_trace", value="/abs/path/model.py")
        return node

    branch = helper.make_graph([tagged_node("Identity", ["x"], ["y"])], "branch", [], [])
    branch.metadata_props.add(key="k", value="v")
    graph = helper.make_graph(
        [tagged_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], "g", [], [], doc_string="doc"
    )
    fn = helper.make_function("local", "f", ["a"], ["b"], [tagged_node("Identity", ["a"], ["b"])], [])
    model = helper.make_model(graph, functions=[fn])
    model.graph.input.add().metadata_props.add(key="k", value="v")
    strip_metadata(model)
    assert b"/abs/path" not in model.SerializeToString() and b"doc" not in model.SerializeToString()
