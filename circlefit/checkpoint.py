"""Model weights as safetensors: no pickle, so loading never runs code from the file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from circlefit.config import ModelConfig, from_mapping
from circlefit.io import DataError
from circlefit.model import CircleModel

__all__ = ["load_model", "save_model"]

_FORMAT = "circlefit-weights/1"


def save_model(model: CircleModel, path: str | Path) -> None:
    """Write weights + buffers; the architecture rides along in the header metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": _FORMAT,
        "model": json.dumps({"hidden": list(model.cfg.hidden), "activation": model.cfg.activation}),
    }
    Path(path).write_bytes(_sorted_header(save(tensors, metadata=meta)))


def _sorted_header(blob: bytes) -> bytes:
    """Rewrite the JSON header with sorted keys, same length: safetensors serializes it from a
    hash map whose order varies per process, so the same weights would hash differently."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > size:  # pragma: no cover - same keys and values cannot grow
        raise ValueError(f"safetensors header grew from {size} to {len(text)} bytes when sorted")
    return blob[:8] + text.ljust(size, b" ") + blob[8 + size :]


def load_model(path: str | Path) -> CircleModel:
    """Load a model saved by `save_model`, refusing anything else with the file's name."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a circlefit safetensors model ({e}); refusing to load it") from None
    if meta.get("format") != _FORMAT:
        raise DataError(f"{path}: missing or unknown format tag {meta.get('format')!r}; expected {_FORMAT!r}")
    try:
        cfg = from_mapping(ModelConfig, json.loads(meta["model"]), str(path), "model")
        model = CircleModel(cfg)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: weights do not match their recorded architecture: {e}") from None
    for name, t in model.state_dict().items():
        if not torch.isfinite(t).all():
            raise DataError(f"{path}: tensor {name} has non-finite values")
    return model.eval()
