"""The weights file (safetensors, no pickle: loading never runs code from the file), both ways.

`save_weights` / `load_weights` write and read numpy `Weights` (no torch: the lstsq train and the
evaluate stages stay light); `load_model` gives a torch `CircleModel` (the export stage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from circlefit.config import ModelConfig, from_mapping
from circlefit.errors import DataError
from circlefit.io import atomic_file
from circlefit.numeric.mlp64 import Weights

if TYPE_CHECKING:
    from circlefit.model.network import CircleModel

__all__ = ["load_model", "load_weights", "save_weights"]

_FORMAT = "circlefit-weights/2"
_META_KEY = "circlefit"


def save_weights(weights: Weights, path: str | Path) -> None:
    """Write weights + buffers (numpy, no torch); the architecture rides along in the header metadata."""
    from safetensors.numpy import save_file

    hidden = [int(w.shape[0]) for w, _ in weights.layers[:-1]]
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.to_state().items()}
    # ONE metadata key: safetensors stores metadata in a Rust HashMap whose iteration order is
    # random per call, so two keys would make the file's bytes (and its DVC hash) vary run to run.
    header = {"format": _FORMAT, "model": {"hidden": hidden, "activation": weights.activation}}
    with atomic_file(path) as tmp:  # no half-written model ever sits under the final name
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(header, sort_keys=True)})


def _read(path: str | Path) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """The recorded architecture and the float32 tensors, checked against each other and for finiteness."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a circlefit safetensors model ({e}); refusing to load it") from None
    try:
        header = json.loads(meta.get(_META_KEY, "{}"))
    except ValueError:
        header = None
    tag = header.get("format") if isinstance(header, dict) else None
    if tag != _FORMAT:
        raise DataError(f"{path}: missing or unknown format tag {tag!r}; expected {_FORMAT!r}")
    try:
        cfg = from_mapping(ModelConfig, header["model"], str(path), "model")
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: weights do not match their recorded architecture: {e}") from None
    want = Weights.shapes(cfg.hidden)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = [f"missing tensor {k}" for k in sorted(set(want) - set(got))]
    problems += [f"unexpected tensor {k}" for k in sorted(set(got) - set(want))]
    problems += [
        f"{k} has shape {got[k]}, expected {want[k]}" for k in sorted(set(want) & set(got)) if got[k] != want[k]
    ]
    problems += [f"{k} is {v.dtype}, expected float32" for k, v in sorted(tensors.items()) if v.dtype != np.float32]
    if problems:
        raise DataError(f"{path}: weights do not match their recorded architecture: {'; '.join(problems)}")
    for name, t in tensors.items():
        if not np.isfinite(t).all():
            raise DataError(f"{path}: tensor {name} has non-finite values")
    return cfg, tensors


def load_weights(path: str | Path) -> Weights:
    """The stored model as float32 numpy arrays (circlefit.numeric.mlp64.Weights), without torch."""
    cfg, tensors = _read(path)
    return Weights.from_state(tensors, cfg.activation)


def load_model(path: str | Path) -> CircleModel:
    """The torch module of a weights file, refusing anything but a circlefit weights file with its name."""
    from circlefit.model.network import to_module

    return to_module(load_weights(path))
