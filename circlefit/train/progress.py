"""A one-line progress display on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total_epochs: int = 0, stream: TextIO = sys.stderr) -> None:
        self.total = total_epochs
        self.stream = stream
        self.enabled = stream.isatty()

    def __call__(self, row: dict[str, Any]) -> None:
        if self.enabled:
            epoch = f" epoch {row['epoch']}/{self.total}" if "epoch" in row else ""
            self.stream.write(
                f"\r{row['phase']:>11} step {row['step']:>6}{epoch} "
                f"train {row['train_loss']:.3e} val {row['val_loss']:.3e}\x1b[K"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
