"""The exported model in onnxruntime: a checked session and predictions (this module never imports torch).

What the CLI, the export's parity gate and consumers' code use to run the file: `load_session`
refuses a file whose sha256 disagrees with its sidecar or whose I/O is not the contract
(circlefit.contract); `predict` runs rows in cache-sized chunks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from circlefit.contract import INPUT_NAME, OUTPUT_NAME, sha256_hex, sidecar_path
from circlefit.errors import PredictError

__all__ = ["CHUNK_ROWS", "PredictError", "load_session", "predict", "run", "session_from_bytes"]

# Rows per onnxruntime call. One call over a large batch writes its whole [rows, width] hidden
# layer to memory and reads it back; 1 024 rows × 256 float32 (1 MiB) stay in a core's L2 cache.
# The measured gain over one call: BENCHMARKS.md ("Inference", bench/inference.py).
CHUNK_ROWS = 1024
_ORT_ERRORS = tuple(
    getattr(_ort_state, n)
    for n in ("Fail", "InvalidArgument", "InvalidProtobuf", "InvalidGraph", "NoSuchFile", "NotImplemented", "EPFail")
    if hasattr(_ort_state, n)
)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_sidecar(data: bytes, model: Path, side: Path) -> None:
    try:
        expected = json.loads(side.read_text(encoding="utf-8"))["model"]["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise PredictError(f"{side}: unreadable sidecar of {model.name} ({_first_line(e)})") from None
    actual = sha256_hex(data)
    if actual != expected:
        raise PredictError(
            f"{model}: sha256 {actual} does not match {side.name} ({expected}): "
            "the model file is corrupt or was replaced; refusing to use it"
        )


def _describe(arg: Any) -> str:
    return f"{arg.name!r} {arg.type} {list(arg.shape)}"


def _check_contract(session: ort.InferenceSession, path: Path) -> None:
    ins, outs = session.get_inputs(), session.get_outputs()
    ok_in = len(ins) == 1 and ins[0].name == INPUT_NAME and ins[0].type == "tensor(float)"
    ok_in = ok_in and len(ins[0].shape) == 2 and ins[0].shape[1] == 2
    ok_out = len(outs) == 1 and outs[0].type == "tensor(float)" and len(outs[0].shape) == 2 and outs[0].shape[1] == 1
    if not (ok_in and ok_out):
        got = ", ".join(map(_describe, ins)) + " -> " + ", ".join(map(_describe, outs))
        raise PredictError(
            f"{path}: not a circlefit model: it maps {got}; expected {INPUT_NAME!r} tensor(float) [batch, 2] -> "
            "tensor(float) [batch, 1]"
        )


def load_session(path: str | Path, threads: int = 0, verify_sidecar: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session for a circlefit model file, checked against its sidecar when one is beside it.

    `threads` = 0 lets onnxruntime choose; the parity check pins 1 so its numbers do not depend on the machine.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PredictError(f"{path}: model file not found") from None
    except OSError as e:
        raise PredictError(f"{path}: cannot read the model file ({_first_line(e)})") from None
    side = sidecar_path(path)
    if verify_sidecar and side.is_file():
        _check_sidecar(data, path, side)
    return session_from_bytes(data, path, threads)


def session_from_bytes(data: bytes, path: str | Path, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session for model bytes already read (ONNX or ORT format), checked against
    the contract; `path` is what errors call the model. `threads` as for `load_session`."""
    path = Path(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = threads
    opts.log_severity_level = 3  # errors only: warnings would break the one-line error contract
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as e:
        raise PredictError(f"{path}: not a loadable ONNX model ({_first_line(e)})") from None
    _check_contract(session, path)
    return session


def _check_input(name: str, value: Any) -> np.ndarray:
    if name != INPUT_NAME:
        raise PredictError(f"unknown input {name!r}: the model's only input is {INPUT_NAME!r}")
    if not isinstance(value, np.ndarray):
        raise PredictError(f"input {INPUT_NAME!r} must be a numpy array, got {type(value).__name__}")
    if value.dtype != np.float32:
        raise PredictError(
            f"input {INPUT_NAME!r} must be float32, got {value.dtype} (convert with .astype(np.float32))"
        )
    if value.ndim != 2 or value.shape[1] != 2:
        raise PredictError(f"input {INPUT_NAME!r} must have shape [N, 2] (rows of x, y), got {list(value.shape)}")
    return np.ascontiguousarray(value)


def run(session: ort.InferenceSession, feeds: Mapping[str, Any], chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Run with a feed dict after checking the input contract; returns the raw output [N, 1].

    Inputs longer than `chunk_rows` run as several calls (the model is row-wise, so the result
    is the same to the bit as one call's, and faster: see CHUNK_ROWS).
    """
    if INPUT_NAME not in feeds:
        names = ", ".join(map(repr, feeds)) or "nothing"
        raise PredictError(f"missing input {INPUT_NAME!r} (float32 [N, 2]); got {names}")
    checked = {name: _check_input(name, value) for name, value in feeds.items()}
    return _run_chunked(session, checked[INPUT_NAME], chunk_rows)


def _run_chunked(session: ort.InferenceSession, xy: np.ndarray, chunk_rows: int) -> np.ndarray:
    if chunk_rows < 1:
        raise PredictError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    if xy.shape[0] <= chunk_rows:
        return session.run([OUTPUT_NAME], {INPUT_NAME: xy})[0]
    out = np.empty((xy.shape[0], 1), dtype=np.float32)
    for start in range(0, xy.shape[0], chunk_rows):
        out[start : start + chunk_rows] = session.run([OUTPUT_NAME], {INPUT_NAME: xy[start : start + chunk_rows]})[0]
    return out


def predict(session: ort.InferenceSession, xy: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Predictions [N] float32 for raw coordinates xy float32 [N, 2], `chunk_rows` rows per call."""
    return run(session, {INPUT_NAME: xy}, chunk_rows)[:, 0]
