"""The exported model's contract: what a consumer may rely on, owned here and nowhere else (imports nothing).

The graph maps `xy` float32 [batch, 2] (raw x, y) to `x2_plus_y2` float32 [batch, 1]. Beside
`X/model.onnx` sit its sidecar `X/model.json` (sha256, I/O, provenance, parity record), the
ONNX Model Zoo test data set `X/test_data_set_0/` and the model card `X/README.md`; the probes
file is named by the sidecar, relative to it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = [
    "CARD_NAME",
    "INPUT_NAME",
    "MODEL_VERSION",
    "OUTPUT_NAME",
    "PROBES_FORMAT",
    "SIDECAR_FORMAT",
    "TEST_DATA_SET",
    "card_path",
    "sha256_hex",
    "sidecar_path",
    "zoo_dir",
]

INPUT_NAME = "xy"  # float32 [batch, 2]: raw coordinates
OUTPUT_NAME = "x2_plus_y2"  # float32 [batch, 1]: raw prediction of x² + y²
MODEL_VERSION = 1  # the graph's contract above; bump on any change to it
SIDECAR_FORMAT = "circlefit-onnx-sidecar/1"
PROBES_FORMAT = "circlefit-probes/1"
TEST_DATA_SET = "test_data_set_0"
CARD_NAME = "README.md"


def sidecar_path(model: str | Path) -> Path:
    """The JSON sidecar beside a model: `model.onnx` → `model.json`."""
    return Path(model).with_suffix(".json")


def zoo_dir(model: str | Path) -> Path:
    """The Model Zoo test data set beside a model: `X/model.onnx` → `X/test_data_set_0`."""
    return Path(model).parent / TEST_DATA_SET


def card_path(model: str | Path) -> Path:
    """The model card beside a model: `X/model.onnx` → `X/README.md`."""
    return Path(model).parent / CARD_NAME


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
