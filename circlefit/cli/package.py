"""`circlefit package FORMAT --out DIR`: a serving package of the verified export (circlefit.package)."""

from __future__ import annotations

import argparse
from pathlib import Path

from circlefit.cli.predict import DEFAULT_MODEL

__all__ = ["FORMATS", "configure", "run"]

FORMATS = {
    "mlflow": "an MLflow model directory (onnx flavor) for mlflow models serve and MLflow registries; "
    "needs the serve extra",
    "triton": "a Triton Inference Server model repository for its onnxruntime backend",
    "ort": "the ORT format, for onnxruntime's minimal (reduced-size) builds",
}


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    formats = {}
    for name, text in FORMATS.items():
        f = formats[name] = sub.add_parser(name, help=text, description=text)
        f.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty directory")
        f.add_argument(
            "--model",
            type=Path,
            default=DEFAULT_MODEL,
            help=f"the model, verified first (a file with its sidecar, or its directory; default: {DEFAULT_MODEL})",
        )
    formats["mlflow"].add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime threads per served process (default: 1; 0: onnxruntime's default, a thread per core)",
    )
    formats["triton"].add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="rows Triton may merge into one inference (default: 1024)",
    )


def run(args: argparse.Namespace) -> int:
    if args.format == "mlflow":
        from circlefit.package import mlflow

        done = mlflow.package(args.model, args.out, threads=args.threads)
    elif args.format == "triton":
        from circlefit.package import triton

        size = triton.MAX_BATCH_SIZE if args.max_batch_size is None else args.max_batch_size
        done = triton.package(args.model, args.out, max_batch_size=size)
    else:
        from circlefit.package import ort

        done = ort.package(args.model, args.out)
    print(done.summary())
    return 0
