"""train: fit the ReLU MLP on standardized train data; write weights, loss curve and summary."""

import argparse
import csv
import io
from pathlib import Path

from circlefit.checkpoint import save_model
from circlefit.config import load_params
from circlefit.device import configure, resolve_device
from circlefit.io import atomic_file, load_array, read_json, write_json
from circlefit.normalize import stats_from_json
from circlefit.progress import Progress
from circlefit.stage import run_stage
from circlefit.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--stats", required=True, help="stats JSON written by the normalize stage")
    ap.add_argument("--model", required=True, help="output weights (.safetensors)")
    ap.add_argument("--curve", required=True, help="output loss curve (TSV)")
    ap.add_argument("--summary", required=True, help="output run summary (JSON, deterministic)")
    ap.add_argument("--timing", required=True, help="output wall-time JSON (not a DVC out)")
    args = ap.parse_args()

    params = load_params(args.params)
    device = resolve_device(params.train.device, args.params)
    configure(device, params.train.threads, params.train.precision)
    stats = stats_from_json(read_json(args.stats), args.stats)
    data = Path(args.data)
    train_rows = load_array(data / "train.npy", 3)
    val_rows = load_array(data / "val.npy", 3)

    progress = Progress(params.train.epochs)
    result = train(params.train, params.model, stats, train_rows, val_rows, device, on_eval=progress)
    progress.close()

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(result.curve[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.curve)
    with atomic_file(args.curve) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    write_json(args.summary, result.summary)
    write_json(args.timing, result.timing)
    with atomic_file(args.model) as tmp:  # last: a model file exists only after a complete run
        save_model(result.model, tmp)


if __name__ == "__main__":
    run_stage("train", main)
