"""The edge shared by stage scripts: logging setup and one-line errors with exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["run_stage"]


def _expected() -> tuple[type[BaseException], ...]:
    from circlefit.config import ConfigError
    from circlefit.io import DataError

    # OSError: a full disk, a read-only or vanished directory; its message names the file and the errno.
    errors: list[type[BaseException]] = [ConfigError, DataError, OSError]
    for mod, name in (
        ("circlefit.device", "DeviceError"),
        ("circlefit.train", "TrainingDiverged"),
        ("circlefit.export", "ParityError"),
        ("circlefit.launch", "DistributedError"),
    ):
        cls = getattr(sys.modules.get(mod), name, None)  # only if the stage imported it: keeps torch out
        if cls is not None:
            errors.append(cls)
    return tuple(errors)


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's `main`; expected failures print `circlefit NAME: error: …` and exit 1."""
    level = os.environ.get("CIRCLEFIT_LOG", "INFO").upper()
    logging.basicConfig(level=level, format=f"circlefit {name}: %(message)s", stream=sys.stderr)
    try:
        main()
    except _expected() as e:
        print(f"circlefit {name}: error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
