"""The errors circlefit expects: one base class, caught at the edges (stages, CLI). Imports nothing.

Each message is one line that names what is wrong: the file, the dotted key and the value where
there is one (`params.yaml: train.lr must be > 0, got 0`). Anything else that escapes a stage is
a bug and keeps its traceback. The second base of each class is the built-in it always was, so
`except ValueError` in callers keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CirclefitError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DistributedError",
    "PackageError",
    "ParityError",
    "PredictError",
    "ReportError",
    "TrainingDiverged",
    "UsageError",
    "VerifyError",
]


class CirclefitError(Exception):
    """An expected failure: the edge prints `circlefit NAME: error: <message>` and exits 1."""


class ConfigError(CirclefitError, ValueError):
    """A params file that cannot be used; the message names the file and the dotted key."""


class DataError(CirclefitError, ValueError):
    """An input file that is missing, truncated or malformed; the message names the file."""


class DeviceError(CirclefitError, RuntimeError):
    """The requested device cannot be used here."""


class TrainingDiverged(CirclefitError, RuntimeError):
    """The loss became non-finite; the message names the step and the learning rate."""


class ParityError(CirclefitError, RuntimeError):
    """An exported model whose outputs differ from PyTorch's beyond tolerance; names the worst input."""


class DistributedError(CirclefitError, RuntimeError):
    """Distributed training could not run or did not finish on every rank; nothing was written."""


class PredictError(CirclefitError, ValueError):
    """A model file or an input that cannot be used; the message is one line naming what is wrong."""


class ReportError(CirclefitError, RuntimeError):
    """DVC could not produce a diff; the message carries DVC's own error line."""


class UsageError(CirclefitError, ValueError):
    """Bad command-line input; printed as one line."""


class VerifyError(CirclefitError, ValueError):
    """One failed check of `circlefit verify`: which check (circlefit.verify.CHECKS) and the file, in one line."""

    def __init__(self, check: str, path: Path, why: str) -> None:
        super().__init__(f"{check} check failed: {path}: {why}")
        self.check = check
        self.path = path


class PackageError(CirclefitError, RuntimeError):
    """A package that cannot be written: the message names the file or directory and what is wrong."""
