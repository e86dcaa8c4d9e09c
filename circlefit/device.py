"""Device, threads and precision: decided once, at the edge, and passed down."""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "configure", "resolve_device"]


class DeviceError(RuntimeError):
    """The requested device cannot be used here."""


def resolve_device(requested: str, source: str = "params.yaml") -> torch.device:
    """`auto` → CUDA if available else CPU; `cuda` without a GPU is an error, never a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"{source}: train.device is 'cuda' but torch {torch.__version__} sees no CUDA device "
            f"(CUDA build: {torch.version.cuda or 'no'}); set train.device to cpu or auto"
        )
    return torch.device(requested)


def configure(device: torch.device, threads: int, precision: str) -> None:
    """Process-wide settings: thread count (bitwise repeatability depends on it) and TF32."""
    torch.set_num_threads(threads)
    if device.type == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
