"""The ONNX Model Zoo test layout beside the model: `test_data_set_0/input_0.pb` and `output_0.pb`.

ONNX's own tooling (`onnx.backend.test`'s runner, onnxruntime's `onnx_test_runner`) finds
`model.onnx` and every `test_data_set_*` directory beside it; each holds one serialized
`onnx.TensorProto` per graph input (`input_<i>.pb`, i = position in `graph.input`) and per graph
output (`output_<i>.pb`, position in `graph.output`). circlefit's set is its probes: the inputs
and the expected outputs exactly as `probes.json` records them, so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["read_test_data_set", "write_test_data_set"]


def _tensor(value: onnx.ValueInfoProto, array: np.ndarray) -> bytes:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), value.name).SerializeToString(
        deterministic=True
    )


def write_test_data_set(dest: str | Path, proto: onnx.ModelProto, probes: dict[str, Any]) -> list[Path]:
    """Write `input_0.pb` (probes' inputs) and `output_0.pb` (their expected outputs) into directory `dest`.

    `probes` is the probes.json document. Inputs are shaped [N, 2] and outputs [N, 1], in the graph's
    element types, named after `graph.input[0]` and `graph.output[0]`. Returns the files written.
    """
    dest = Path(dest)
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise ValueError(
            f"the Zoo test set holds one input and one output; the graph has {len(proto.graph.input)} "
            f"and {len(proto.graph.output)}"
        )
    n = len(probes["inputs"])
    xy = np.asarray(probes["inputs"], dtype=np.float64).reshape(n, 2)
    want = np.asarray(probes["expected"], dtype=np.float64).reshape(n, 1)
    files = []
    for kind, value, array in (("input", proto.graph.input[0], xy), ("output", proto.graph.output[0], want)):
        path = dest / f"{kind}_0.pb"
        path.write_bytes(_tensor(value, array))
        files.append(path)
    return files


def _load(path: Path) -> tuple[str, np.ndarray]:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


def read_test_data_set(path: str | Path) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(inputs, outputs) of a test data set directory, each a list of (name, array) by position."""
    path = Path(path)

    def files(kind: str) -> list[Path]:
        count = len(list(path.glob(f"{kind}_*.pb")))
        return [path / f"{kind}_{i}.pb" for i in range(count)]

    return [_load(p) for p in files("input")], [_load(p) for p in files("output")]
