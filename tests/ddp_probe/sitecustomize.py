"""For tests/test_distributed.py: marks when a torchrun rank is well into training. Loaded from PYTHONPATH.

It acts only in a torchrun rank (TORCHELASTIC_RUN_ID set) whose environment has
$CIRCLEFIT_TEST_COLLECTIVES: it counts the rank's `torch.distributed.all_reduce` calls and, once
the third has returned (the row counts at setup, then two evaluations, with training steps
between them), creates the file $CIRCLEFIT_TEST_COLLECTIVES/rank$RANK. No library code knows
about it.
"""

from __future__ import annotations

import os
from typing import Any

MARK_AFTER = 3


def _install(marks: str) -> None:
    import torch.distributed as tdist  # circlefit.distributed calls tdist.all_reduce: it finds this one

    real = tdist.all_reduce
    calls = 0

    def all_reduce(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        out = real(*args, **kwargs)
        calls += 1
        if calls == MARK_AFTER:
            open(os.path.join(marks, f"rank{os.environ['RANK']}"), "w").close()
        return out

    tdist.all_reduce = all_reduce


if os.environ.get("TORCHELASTIC_RUN_ID") and os.environ.get("CIRCLEFIT_TEST_COLLECTIVES"):
    _install(os.environ["CIRCLEFIT_TEST_COLLECTIVES"])
