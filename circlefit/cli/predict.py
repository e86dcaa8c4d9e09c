"""`circlefit predict`: x² + y² for points from the command line, a CSV file or stdin, with onnxruntime."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from circlefit.contract import OUTPUT_NAME
from circlefit.errors import PredictError, UsageError

__all__ = ["DEFAULT_MODEL", "configure", "parse_csv", "parse_points", "run"]

DEFAULT_MODEL = Path("data/export/model.onnx")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", nargs="*", metavar="X Y", help="coordinates as pairs: x1 y1 x2 y2 … (use -- before -1e3)")
    p.add_argument("--csv", metavar="FILE", help="read points from a CSV file with columns x,y ('-' for stdin)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"ONNX model (default: {DEFAULT_MODEL})")


def run(args: argparse.Namespace) -> int:
    from circlefit.runtime import load_session, predict

    xy = _read_points(args)
    out = predict(load_session(args.model), xy)
    lines = [f"x,y,{OUTPUT_NAME}"]
    lines += [f"{x!s},{y!s},{v!s}" for (x, y), v in zip(xy, out, strict=True)]  # str(float32): shortest round-trip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _read_points(args: argparse.Namespace) -> np.ndarray:
    if args.points and args.csv:
        raise UsageError("give points either as arguments or with --csv, not both")
    if args.points:
        return parse_points(args.points)
    if args.csv is None and sys.stdin.isatty():
        raise UsageError("no points: pass pairs 'X Y', --csv FILE, or pipe CSV lines 'x,y' on stdin")
    if args.csv in (None, "-"):
        return parse_csv(sys.stdin.read(), "stdin")
    try:
        return parse_csv(Path(args.csv).read_text(encoding="utf-8"), args.csv)
    except FileNotFoundError:
        raise UsageError(f"{args.csv}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{args.csv}: cannot read: {e}") from None


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PredictError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise PredictError(f"{where}: {text.strip()!r} is not a finite float32 number")
    return value


def parse_points(tokens: Iterable[str]) -> np.ndarray:
    """Command-line numbers `x1 y1 x2 y2 …` → float32 [N, 2]."""
    tokens = list(tokens)
    if len(tokens) % 2:
        raise PredictError(f"points come as pairs 'x y'; got {len(tokens)} numbers (an odd count)")
    values = [_number(t, f"argument {i + 1}") for i, t in enumerate(tokens)]
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


def parse_csv(text: str, source: str) -> np.ndarray:
    """CSV text with two columns x,y (an optional header `x,y`; blank lines ignored) → float32 [N, 2]."""
    rows: list[tuple[float, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if not rows and [f.strip().lower() for f in fields] == ["x", "y"]:
            continue
        if len(fields) != 2:
            raise PredictError(f"{source}, line {number}: expected 2 values 'x,y', got {len(fields)}: {line.strip()!r}")
        where = f"{source}, line {number}"
        rows.append((_number(fields[0], where), _number(fields[1], where)))
    if not rows:
        raise PredictError(f"{source}: no points (expected lines 'x,y')")
    return np.asarray(rows, dtype=np.float32)
