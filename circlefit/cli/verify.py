"""`circlefit verify PATH`: sha256 against the sidecar, then the probes through onnxruntime (circlefit.verify)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        type=Path,
        metavar="PATH",
        help="a model file with its sidecar beside it (X.onnx and X.json), or a directory that holds one",
    )


def run(args: argparse.Namespace) -> int:
    from circlefit.verify import verify

    print(verify(args.path).summary())
    return 0
