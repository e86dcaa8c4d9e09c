"""`circlefit package triton`: a Triton Inference Server model repository for its onnxruntime backend.

    OUT/circlefit/config.pbtxt
    OUT/circlefit/1/model.onnx        the verified bytes, with model.json and probes.json beside them

The configuration is written as protobuf text (Triton's ModelConfig; no Triton package is needed to
write it), with the input and output names, types and shapes read from the graph. Batching is on:
the graph's first dim is the batch, so `max_batch_size` > 0, the dims list the rest, and
`dynamic_batching` lets Triton merge concurrent requests.
"""

from __future__ import annotations

from pathlib import Path

from circlefit.errors import PackageError
from circlefit.package.base import MODEL_FILE, Packaged, Source, Tensor, load_source, write_package
from circlefit.runtime import CHUNK_ROWS

__all__ = ["MAX_BATCH_SIZE", "NAME", "TRITON_TYPES", "config_pbtxt", "package"]

NAME = "circlefit"  # the model's name in the repository: its directory and config name
VERSION = "1"
# Rows Triton may merge into one inference: onnxruntime's cache-sized chunk (circlefit.runtime.CHUNK_ROWS)
MAX_BATCH_SIZE = CHUNK_ROWS
TRITON_TYPES = {"float32": "TYPE_FP32"}  # describe_io's dtype -> Triton's DataType (the contract's one type)


def _tensor(t: Tensor, kind: str, model: Path) -> str:
    try:
        dtype = TRITON_TYPES[t.dtype]
    except KeyError:
        raise PackageError(f"{model}: {kind} {t.name!r} has type {t.dtype}, which has no Triton type here") from None
    dims = ", ".join(str(d) for d in t.batched(model))
    return f'  {{\n    name: "{t.name}"\n    data_type: {dtype}\n    dims: [ {dims} ]\n  }}'


def config_pbtxt(source: Source, max_batch_size: int) -> str:
    """Triton's config.pbtxt for the graph's inputs and outputs, batched, on the CPU."""
    if max_batch_size < 1:
        raise PackageError(f"max_batch_size must be > 0 (batching on), got {max_batch_size}")
    return (
        f'name: "{NAME}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {max_batch_size}\n"
        "input [\n" + ",\n".join(_tensor(t, "input", source.model) for t in source.inputs) + "\n]\n"
        "output [\n" + ",\n".join(_tensor(t, "output", source.model) for t in source.outputs) + "\n]\n"
        "dynamic_batching { }\n"
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
    )


def package(model: str | Path, out: str | Path, max_batch_size: int = MAX_BATCH_SIZE) -> Packaged:
    """Verify `model`, then write a Triton model repository into `out` (new or empty), verified in place."""
    source = load_source(model)
    config = config_pbtxt(source, max_batch_size)

    def fill(tmp: Path) -> None:
        (tmp / NAME / VERSION).mkdir(parents=True)
        (tmp / NAME / "config.pbtxt").write_text(config, encoding="utf-8")
        (tmp / NAME / VERSION / MODEL_FILE).write_bytes(source.data)

    return write_package("triton", source, out, f"{NAME}/{VERSION}/{MODEL_FILE}", fill)
