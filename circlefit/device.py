"""Device, threads, precision and determinism: decided once, at the edge, and passed down.

A device is a string torch understands ("cpu", "cuda", "cuda:1"). Asking for the CPU imports no
torch, so the default training (lstsq on the CPU, numpy only) stays torch-free.
"""

from __future__ import annotations

import os

from circlefit.config import PARAMS_FILE
from circlefit.errors import DeviceError

__all__ = ["CUBLAS_WORKSPACE", "DeviceError", "configure", "resolve_device"]

# cuBLAS is only run-to-run deterministic with a fixed workspace; the variable is read when
# cuBLAS is first used, so it must be set before the first matmul on the GPU (configure does).
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(requested: str, source: str = PARAMS_FILE) -> str:
    """`auto` → "cuda" if torch sees a GPU, else "cpu"; `cuda` without a GPU is an error, never a fallback."""
    if requested == "cpu":
        return "cpu"
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"{source}: train.device is 'cuda' but torch {torch.__version__} sees no CUDA device "
            f"(CUDA build: {torch.version.cuda or 'no'}); set train.device to cpu or auto"
        )
    return requested


def configure(device: str, threads: int, precision: str = "fp32") -> None:
    """Process-wide torch settings: thread count (bitwise repeatability depends on it), TF32, determinism.

    On CUDA: deterministic algorithms where torch has them (a warning, not an error, where it
    has none), a fixed cuBLAS workspace, and no NaN-filling of fresh allocations (that fill
    costs a full memory pass per activation at large n and changes no result). CPU settings
    other than the thread count are left as they are, so CPU results do not move.
    """
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
