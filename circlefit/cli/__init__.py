"""The `circlefit` console script: one argparse parser, one module per subcommand (no torch here).

The CLI is the edge: it parses arguments, calls the library and prints. Nothing in the library
imports it. Each subcommand module has `configure(parser)` and `run(args) -> exit status`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from circlefit.cli import package, predict, report, verify
from circlefit.errors import CirclefitError

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: Sequence[str]


COMMANDS: dict[str, Command] = {
    "predict": Command(
        "predict x² + y² with the exported ONNX model (onnxruntime only)",
        predict.configure,
        predict.run,
        ["circlefit predict 3 4 -1.5 2", "circlefit predict --csv points.csv", "printf '3,4\\n' | circlefit predict"],
    ),
    "verify": Command(
        "check a model against its sidecar: sha256, then the probes in onnxruntime within the export's tolerance",
        verify.configure,
        verify.run,
        ["circlefit verify data/export", "circlefit verify model-pkg/model.onnx"],
    ),
    "package": Command(
        "write a serving package of the verified model: mlflow, triton or ort",
        package.configure,
        package.run,
        ["circlefit package mlflow --out model-mlflow", "circlefit package triton --out triton-repo"],
    ),
    "report": Command(
        "markdown review report of a change: params, metrics and plots diffs",
        report.configure,
        report.run,
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
