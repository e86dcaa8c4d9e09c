"""Pin the CPU kernel libraries' dispatch before torch loads them (the stage processes call this first).

The default pipeline's tracked bytes do not need these: every number that decides them is
computed with CPU-independent arithmetic (RELIABILITY.md "Numeric policy"). They narrow what
still runs on vendor kernels, the `gradient` method and PyTorch's side of the parity gate, to
the branches Intel and AMD CPUs share: MKL's COMPATIBLE path (its AVX2 branch silently falls
back to AUTO on AMD), ATen and oneDNN at AVX2, and no dynamic thread counts. A variable the
user set wins; CIRCLEFIT_PIN_KERNELS=0 sets none (tests/test_portable.py runs with them off).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["PINS", "pin_cpu_kernels"]

PINS = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each pin the environment does not already set; returns what was set."""
    if environ.get("CIRCLEFIT_PIN_KERNELS", "1") == "0":
        return {}
    added = {k: v for k, v in PINS.items() if k not in environ}
    environ.update(added)
    return added
