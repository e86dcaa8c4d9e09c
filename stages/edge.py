"""The process edge every stage shares: kernel pins before torch or numpy load, and one-line errors.

Pins: the default pipeline's tracked bytes do not need them (every number that decides them is
computed with CPU-independent arithmetic, RELIABILITY.md "Numeric policy"). They narrow what
still runs on vendor kernels, the `gradient` method and PyTorch's side of the parity gate, to
the branches Intel and AMD CPUs share: MKL's COMPATIBLE path (its AVX2 branch silently falls
back to AUTO on AMD), ATen and oneDNN at AVX2, and no dynamic thread counts. A variable the
user set wins; CIRCLEFIT_PIN_KERNELS=0 sets none of them (tests/test_portable.py runs with them off);
the BLAS thread count (THREADS) is set either way.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import NoReturn

__all__ = ["PINS", "THREADS", "pin_cpu_kernels", "run_stage"]

PINS = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}


# numpy's BLAS runs one thread per caller: the heavy float64 work (the lstsq normal equations and
# losses) spreads its row blocks over train.threads worker threads itself, and a second level of
# BLAS threads under them only spins (bits do not depend on either: the sums are exact).
THREADS = {"OPENBLAS_NUM_THREADS": "1"}


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each pin (and the BLAS thread count) the environment does not already set; returns what was set."""
    wanted = THREADS if environ.get("CIRCLEFIT_PIN_KERNELS", "1") == "0" else PINS | THREADS
    added = {k: v for k, v in wanted.items() if k not in environ}
    environ.update(added)
    return added


def run_stage(name: str, main: Callable[[], None], *, collect: bool = True) -> NoReturn:
    """Run a stage's `main`; expected failures print `circlefit NAME: error: …` and exit 1.

    Expected: every CirclefitError (circlefit.errors), and OSError (a full disk, a read-only or
    vanished directory), whose message names the file and the errno. Anything else is a bug and
    keeps its traceback.

    Garbage collection: importing `stages` turned the cyclic collector off for the imports; the
    objects they made (10⁵–10⁶ with torch) are frozen here, out of every later collection, and the
    collector goes back on unless `collect=False` (the export stage: the ONNX exporter allocates
    millions of short-lived objects in one call, and the process ends soon after). Frozen again at
    exit, so the interpreter's teardown does not walk them either. What it saves: BENCHMARKS.md
    ("Stage processes").
    """
    from circlefit.errors import CirclefitError

    level = os.environ.get("CIRCLEFIT_LOG", "INFO").upper()
    logging.basicConfig(level=level, format=f"circlefit {name}: %(message)s", stream=sys.stderr)
    gc.freeze()
    if collect:
        gc.enable()
    try:
        main()
    except (CirclefitError, OSError) as e:
        print(f"circlefit {name}: error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        gc.freeze()
    sys.exit(0)
