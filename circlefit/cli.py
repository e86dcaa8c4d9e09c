"""The `circlefit` console script: one argparse parser, one small entry per subcommand (no torch here)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from circlefit.errors import CirclefitError, UsageError

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

DEFAULT_MODEL = Path("data/export/model.onnx")


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: Sequence[str]


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", nargs="*", metavar="X Y", help="coordinates as pairs: x1 y1 x2 y2 … (use -- before -1e3)")
    p.add_argument("--csv", metavar="FILE", help="read points from a CSV file with columns x,y ('-' for stdin)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"ONNX model (default: {DEFAULT_MODEL})")


def _read_points(args: argparse.Namespace) -> np.ndarray:
    from circlefit.predict import parse_csv, parse_points

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


def _predict(args: argparse.Namespace) -> int:
    from circlefit.predict import OUTPUT_NAME, load_session, predict

    xy = _read_points(args)
    out = predict(load_session(args.model), xy)
    lines = [f"x,y,{OUTPUT_NAME}"]
    lines += [f"{x!s},{y!s},{v!s}" for (x, y), v in zip(xy, out, strict=True)]  # str(float32): shortest round-trip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    from circlefit.report import add_arguments

    add_arguments(p)


def _report(args: argparse.Namespace) -> int:
    from circlefit.report import run

    return run(args)


COMMANDS: dict[str, Command] = {
    "predict": Command(
        "predict x² + y² with the exported ONNX model (onnxruntime only)",
        _predict_args,
        _predict,
        ["circlefit predict 3 4 -1.5 2", "circlefit predict --csv points.csv", "printf '3,4\\n' | circlefit predict"],
    ),
    "report": Command(
        "markdown review report of a change: params, metrics and plots diffs",
        _report_args,
        _report,
        ["circlefit report main", "circlefit report HEAD~1 HEAD -o report.md"],
    ),
}


def _examples(lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circlefit",
        description="circlefit: learn and serve x² + y².",
        epilog=_examples([e for cmd in COMMANDS.values() for e in cmd.examples]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help,
            epilog=_examples(cmd.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; expected failures print `circlefit COMMAND: error: …` on one line and return 1."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except CirclefitError as e:  # circlefit.errors: every expected failure, one line
        print(f"circlefit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `circlefit predict … | head`: quiet, as the Python docs recommend
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
