"""export: weights + stats -> model.onnx (normalizer inside) + sidecar JSON + probes, verified against PyTorch."""

import argparse
from pathlib import Path

import torch

from circlefit.checkpoint import load_model
from circlefit.config import PARAMS_FILE, load_params
from circlefit.export import Bundle, check_stats, export_bundle
from circlefit.io import json_number, load_array, read_json
from circlefit.normalize import stats_from_json
from circlefit.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--model", required=True, help="weights written by the train stage")
    ap.add_argument(
        "--metrics", required=True, help="metrics JSON written by the evaluate stage (copied to the sidecar)"
    )
    ap.add_argument("--onnx", required=True, help="output model; its sidecar is written beside it (X.onnx -> X.json)")
    ap.add_argument("--probes", required=True, help="output probe vectors (JSON)")
    args = ap.parse_args()

    params = load_params(args.params)
    torch.set_num_threads(1)  # PyTorch's reference outputs (the probes) then match on any machine
    data = Path(args.data)
    splits = {name: load_array(data / f"{name}.npy", 3)[:, :2] for name in ("test", "ood")}
    stats = stats_from_json(read_json(args.stats), args.stats)
    model = load_model(args.model)
    check_stats(model, stats, args.model, args.stats)
    radius = json_number(read_json(data / "manifest.json"), "train_radius", data / "manifest.json")
    bundle = Bundle(model=Path(args.onnx), probes=Path(args.probes))
    export_bundle(model, stats, params, splits, radius, read_json(args.metrics), bundle, args.params)


if __name__ == "__main__":
    run_stage("export", main)
