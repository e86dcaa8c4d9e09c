"""The edge shared by stage scripts: logging setup and one-line errors with exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from circlefit.errors import CirclefitError

__all__ = ["run_stage"]


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's `main`; expected failures print `circlefit NAME: error: …` and exit 1.

    Expected: every CirclefitError (circlefit.errors), and OSError (a full disk, a read-only or
    vanished directory), whose message names the file and the errno. Anything else is a bug and
    keeps its traceback.
    """
    level = os.environ.get("CIRCLEFIT_LOG", "INFO").upper()
    logging.basicConfig(level=level, format=f"circlefit {name}: %(message)s", stream=sys.stderr)
    try:
        main()
    except (CirclefitError, OSError) as e:
        print(f"circlefit {name}: error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
