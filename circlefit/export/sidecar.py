"""The JSON sidecar and probe vectors shipped beside model.onnx, for runtimes that cannot read ONNX metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from circlefit.contract import PROBES_FORMAT, SIDECAR_FORMAT, sha256_hex
from circlefit.export.parity import Tolerance

__all__ = [
    "ParityRecord",
    "ProbesRef",
    "Provenance",
    "build_sidecar",
    "describe_io",
    "probe_inputs",
    "probes_json",
]

_DTYPES: dict[int, str] = {onnx.TensorProto.FLOAT: "float32"}


def describe_io(proto: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Names, dtypes and shapes (a symbolic dim as its name) of the graph's inputs and outputs."""

    def one(v: onnx.ValueInfoProto) -> dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in t.shape.dim]
        return {
            "name": v.name,
            "dtype": _DTYPES.get(t.elem_type, onnx.TensorProto.DataType.Name(t.elem_type)),
            "shape": dims,
        }

    return {"inputs": [one(v) for v in proto.graph.input], "outputs": [one(v) for v in proto.graph.output]}


def _spaced(xy: np.ndarray, k: int) -> np.ndarray:
    if k <= 0 or len(xy) == 0:
        return xy[:0]
    return xy[np.linspace(0, len(xy) - 1, num=min(k, len(xy))).round().astype(np.int64)]


def probe_inputs(sets: dict[str, np.ndarray], radius: float, count: int) -> np.ndarray:
    """`count` float32 [N, 2] inputs: landmarks, then evenly spaced rows of test (1/2), ood and random (1/4 each)."""
    s = radius / math.sqrt(2.0)
    landmarks = np.array([[0, 0], [radius, 0], [0, -radius], [-s, s], [2 * radius, -2 * radius]], dtype=np.float32)
    rest = max(count - len(landmarks), 0)
    parts = [landmarks[:count], _spaced(sets["test"], rest // 2), _spaced(sets["ood"], rest // 4)]
    parts.append(_spaced(sets["random"], count - sum(len(p) for p in parts)))
    return np.concatenate(parts).astype(np.float32)


def probes_json(xy: np.ndarray, expected: np.ndarray, tol: Tolerance, model_sha256: str) -> dict[str, Any]:
    """Inputs (float32 values), the reference's float64 outputs and the exact x² + y²."""
    exact = (xy.astype(np.float64) ** 2).sum(axis=1)
    return {
        "format": PROBES_FORMAT,
        "model_sha256": model_sha256,
        "count": len(xy),
        "tolerance": {
            **tol.to_json(),
            "how": (
                "expected = the stored float32 weights evaluated in float64 (circlefit.numeric.mlp64); "
                "compare |got - expected| <= rtol * (|expected| + offset)"
            ),
            "offset": tol.offset,
        },
        "inputs": [[float(x), float(y)] for x, y in xy],
        "expected": [float(v) for v in expected],
        "exact": [float(v) for v in exact],
    }


@dataclass(frozen=True)
class Provenance:
    """What the model was made from, built once per export: the sidecar and the ONNX metadata both show it."""

    normalization: Mapping[str, Any]  # circlefit.data.normalize.Stats.to_json()
    train_radius: float
    params: Mapping[str, Any]  # the params sections that determine the file (circlefit.export.graph.HASHED_SECTIONS)
    params_sha256: str  # of dumps_json(params)
    exporter: str
    metrics: Mapping[str, Any]  # the evaluate stage's metrics, copied

    def to_json(self) -> dict[str, Any]:
        return {
            "normalization": self.normalization,
            "train_radius": self.train_radius,
            "params_sha256": self.params_sha256,
            "params": self.params,
            "exporter": self.exporter,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class ParityRecord:
    """What the parity gate found (circlefit.export.parity.check_parity's summary) and the size of each input set."""

    summary: Mapping[str, Any]
    sets: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "sets": dict(self.sets)}


@dataclass(frozen=True)
class ProbesRef:
    """Where the probe vectors are, relative to the sidecar (no checkout path), and their hash."""

    file: str
    count: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "count": self.count, "sha256": self.sha256}


def build_sidecar(
    proto: onnx.ModelProto,
    model_bytes: bytes,
    provenance: Provenance | None,
    parity: ParityRecord,
    probes: ProbesRef,
) -> dict[str, Any]:
    """model.json, the one place it is assembled: everything a consumer needs without an ONNX parser.

    Deterministic: no times, no absolute paths. `provenance` None leaves its keys out (tests of
    the write path alone).
    """
    opset = {o.domain: o.version for o in proto.opset_import}.get("")
    return {
        "format": SIDECAR_FORMAT,
        "model": {
            "sha256": sha256_hex(model_bytes),
            "bytes": len(model_bytes),
            "opset": opset,
            "ir_version": proto.ir_version,
            "producer": f"{proto.producer_name} {proto.producer_version}",
            "model_version": proto.model_version,
            "doc_string": proto.doc_string,
        },
        **describe_io(proto),
        **(provenance.to_json() if provenance is not None else {}),
        "parity": parity.to_json(),
        "probes": probes.to_json(),
    }
