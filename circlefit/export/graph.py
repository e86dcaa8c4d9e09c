"""The torch side of the export: the model as an ONNX graph with the normalizer folded in, and its metadata.

`export_onnx` gives a stripped ModelProto (no absolute paths, no stack traces: the same bytes
from any checkout); `provenance` and `annotate` record what it was made from, which the sidecar
(circlefit.export.sidecar) shows too.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import onnx
import torch
from google.protobuf.message import Message

import circlefit
from circlefit.config import PARAMS_FILE, Params, as_dict
from circlefit.contract import INPUT_NAME, MODEL_VERSION, OUTPUT_NAME, sha256_hex
from circlefit.data.normalize import Stats
from circlefit.errors import ConfigError
from circlefit.export.sidecar import Provenance
from circlefit.io import dumps_json
from circlefit.model.network import CircleModel, fold_normalizer

__all__ = ["BATCH_DIM", "HASHED_SECTIONS", "annotate", "export_onnx", "params_digest", "provenance", "strip_metadata"]

BATCH_DIM = "batch"  # the symbolic first dimension of the input and the output
HASHED_SECTIONS = ("data", "normalize", "model", "train", "export")  # the params that determine the file
_EXAMPLE_BATCH = 8  # > 1: torch.export specializes sizes 0 and 1, the batch stays symbolic


def strip_metadata(proto: Message) -> None:
    """Clear every `metadata_props` and `doc_string` in the model, its graphs, subgraphs and functions.

    The exporter records per-node stack traces with absolute source paths (the file's hash would
    change with the checkout's path), FX node names and the ExportedProgram signature.
    """
    for field, value in proto.ListFields():
        if field.name in ("metadata_props", "doc_string"):
            proto.ClearField(field.name)
        elif field.type == field.TYPE_MESSAGE:
            for item in (value,) if isinstance(value, Message) else value:  # a message or a repeated field
                strip_metadata(item)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hold the exporter's chatter to errors: "torchvision is not installed" (torch.onnx logger),
    the opset down-conversion notices (torch.onnx, onnxscript), and the one FutureWarning torch's
    own `ExportedProgram.run_decompositions` raises (`isinstance(treespec, LeafSpec)` is
    deprecated), matched by its message. Any other warning is shown.
    """
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _check_graph(proto: onnx.ModelProto, opset: int, source: str) -> None:
    """Exactly `opset`, standard operators only, and a batch that stayed symbolic: else a ConfigError."""
    got = {o.domain: o.version for o in proto.opset_import}
    if got.get("") != opset:  # the exporter converts from its own opset; below 14 it cannot, and says nothing
        raise ConfigError(
            f"{source}: export.opset {opset} cannot be produced by torch {torch.__version__} (got {got.get('')})"
        )
    if set(got) != {""} or len(proto.functions):  # a torchlib function or domain left in the file
        raise ConfigError(
            f"{source}: the exported graph uses domains {sorted(got)} and {len(proto.functions)} functions; "
            "circlefit's file holds standard ONNX operators only"
        )
    for value in (*proto.graph.input, *proto.graph.output):
        first = value.type.tensor_type.shape.dim[0]
        if first.dim_param != BATCH_DIM:  # torch.export specialized the batch: the file would take one size
            raise ConfigError(f"{source}: {value.name!r} dimension 0 is {first!r}, not the symbolic {BATCH_DIM!r}")


def export_onnx(model: CircleModel, opset: int, source: str = PARAMS_FILE) -> onnx.ModelProto:
    """The model (raw xy in, raw x² + y² out) as a stripped ModelProto of exactly `opset`, weights inside.

    torch.onnx.export(dynamo=True): torch.export traces the module with the batch symbolic, the
    graph is translated to ONNX and onnxscript's optimizer folds constants. The normalizer is
    folded into the first and last layers (circlefit.model.network.fold_normalizer), so the graph
    is Gemm → activation → … → Gemm, with the stats kept in the metadata. Then, for bytes that
    depend on nothing but the weights and `opset`: the metadata (stack traces with absolute paths,
    FX node names, the ExportedProgram signature) and the graph's value_info (shapes every
    consumer infers again) are removed, and ir_version is the least `opset` needs (8 for 18), so
    older runtimes load the file too. What the exporter costs: BENCHMARKS.md ("Pipeline").
    """
    module = fold_normalizer(model.to("cpu").eval())
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (torch.zeros(_EXAMPLE_BATCH, 2),),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            # A named Dim: a bare string would become Dim.DYNAMIC, silently static if specialized.
            dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
            optimize=True,  # folds the Constants that gelu's decomposition leaves (milliseconds)
            verify=False,  # the parity gate (circlefit.export.parity) checks the file as written
            report=False,
            verbose=False,  # no progress lines on stdout
        )
    if program is None:  # typed Optional: torch's other exporter, TorchScript, returns None
        raise AssertionError("torch.onnx.export(dynamo=True) returned no ONNXProgram")
    proto = program.model_proto
    strip_metadata(proto)
    del proto.graph.value_info[:]
    _check_graph(proto, opset, source)
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    return proto


def params_digest(params: Params) -> str:
    """The sha256 of the canonical JSON of the params sections that determine the exported file."""
    return sha256_hex(dumps_json(_hashed_params(params)).encode())


def _hashed_params(params: Params) -> dict[str, Any]:
    return {name: as_dict(getattr(params, name)) for name in HASHED_SECTIONS}


def provenance(stats: Stats, params: Params, train_radius: float, metrics: dict[str, Any]) -> Provenance:
    """What the file is made from, built once; `annotate` and the sidecar both take it."""
    return Provenance(
        normalization=stats.to_json(),
        train_radius=float(train_radius),
        params=_hashed_params(params),
        params_sha256=params_digest(params),
        exporter=f"torch {torch.__version__}, onnx {onnx.__version__}",
        metrics=metrics,
    )


def annotate(proto: onnx.ModelProto, prov: Provenance) -> dict[str, str]:
    """Set doc_string, producer, model_version and circlefit.* metadata_props; returns the props."""
    train_radius = prov.train_radius
    proto.producer_name = "circlefit"
    proto.producer_version = circlefit.__version__
    proto.domain = "circlefit"
    proto.model_version = MODEL_VERSION
    proto.doc_string = (
        f"circlefit: predicts x² + y² from raw coordinates. Input {INPUT_NAME!r} float32 [batch, 2] (x, y); "
        f"output {OUTPUT_NAME!r} float32 [batch, 1]. Input standardization and label de-standardization are "
        "folded into the first and last layers' weights (the stats: metadata circlefit.normalization). "
        f"Trained on radius <= {train_radius:g}; outside it the error grows."
    )
    props = {
        "circlefit.normalization": dumps_json(prov.normalization).strip(),
        "circlefit.params_sha256": prov.params_sha256,
        "circlefit.params": dumps_json(prov.params).strip(),
        "circlefit.train_radius": repr(train_radius),
        "circlefit.exporter": prov.exporter,
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    return props
