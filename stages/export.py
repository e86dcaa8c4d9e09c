"""export: weights + stats -> model.onnx (normalizer inside) + sidecar, probes, Model Zoo set and card, verified."""

import argparse
from pathlib import Path

import torch

from circlefit.config import PARAMS_FILE, load_params
from circlefit.data.normalize import read_stats
from circlefit.data.store import load_split, read_manifest
from circlefit.export.bundle import Bundle, check_stats, export_bundle
from circlefit.io import read_json
from circlefit.model.weights import load_model
from stages.edge import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--model", required=True, help="weights written by the train stage")
    ap.add_argument("--metrics", required=True, help="metrics JSON of the evaluate stage (copied to the sidecar)")
    ap.add_argument("--onnx", required=True, help="output model; the bundle's other files are written beside it")
    ap.add_argument("--probes", required=True, help="output probe vectors (JSON)")
    args = ap.parse_args()

    params = load_params(args.params)
    torch.set_num_threads(1)  # PyTorch's side of the parity gate then computes the same way on any machine
    splits = {name: load_split(args.data, name)[:, :2] for name in ("test", "ood")}
    stats = read_stats(args.stats)
    model = load_model(args.model)
    check_stats(model, stats, args.model, args.stats)
    radius = read_manifest(args.data).train_radius
    bundle = Bundle(model=Path(args.onnx), probes=Path(args.probes))
    export_bundle(model, stats, params, splits, radius, read_json(args.metrics), bundle, args.params)


if __name__ == "__main__":
    run_stage("export", main, collect=False)
