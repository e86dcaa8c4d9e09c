"""Model weights as safetensors: no pickle, so loading never runs code from the file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from circlefit.config import ModelConfig, from_mapping
from circlefit.errors import DataError
from circlefit.model import CircleModel

__all__ = ["load_model", "save_model"]

_FORMAT = "circlefit-weights/2"
_META_KEY = "circlefit"


def save_model(model: CircleModel, path: str | Path) -> None:
    """Write weights + buffers; the architecture rides along in the header metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    # ONE metadata key: safetensors stores metadata in a Rust HashMap whose iteration order is
    # random per call, so two keys would make the file's bytes (and its DVC hash) vary run to run.
    header = {"format": _FORMAT, "model": {"hidden": list(model.cfg.hidden), "activation": model.cfg.activation}}
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(header, sort_keys=True)})


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
    try:
        header = json.loads(meta.get(_META_KEY, "{}"))
    except ValueError:
        header = None
    tag = header.get("format") if isinstance(header, dict) else None
    if tag != _FORMAT:
        raise DataError(f"{path}: missing or unknown format tag {tag!r}; expected {_FORMAT!r}")
    try:
        cfg = from_mapping(ModelConfig, header["model"], str(path), "model")
        model = CircleModel(cfg)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: weights do not match their recorded architecture: {e}") from None
    for name, t in model.state_dict().items():
        if not torch.isfinite(t).all():
            raise DataError(f"{path}: tensor {name} has non-finite values")
    return model.eval()
