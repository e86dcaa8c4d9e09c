"""evaluate: metrics on test, out-of-domain ring and the tutorial's points, plus plot data."""

import argparse
import csv
import io
from pathlib import Path

from circlefit.checkpoint import load_weights
from circlefit.config import PARAMS_FILE, load_params
from circlefit.evaluate import evaluate, plot_rows
from circlefit.io import atomic_file, json_bool, json_number, load_array, read_json, write_json
from circlefit.normalize import stats_from_json
from circlefit.stage import run_stage


def _write_csv(path: str, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--metrics", required=True, help="output metrics JSON")
    ap.add_argument("--pred-plot", required=True, help="output CSV: true vs predicted (test split)")
    ap.add_argument("--radius-plot", required=True, help="output CSV: abs error vs radius (test + ood)")
    args = ap.parse_args()

    cfg = load_params(args.params).evaluate
    data = Path(args.data)
    splits = {name: load_array(data / f"{name}.npy", 3) for name in ("test", "ood", "tutorial")}
    stats = stats_from_json(read_json(args.stats), args.stats)
    manifest_path = data / "manifest.json"
    manifest = read_json(manifest_path)
    train_radius = json_number(manifest, "train_radius", manifest_path)
    held_out = json_bool(manifest, "held_out", manifest_path)  # false: test = train (source: tutorial)
    model = load_weights(args.model)  # evaluated in float64 by circlefit.reference: no torch

    metrics, preds = evaluate(model, splits, stats.mean[2], train_radius, cfg.bands, cfg.batch_size)
    metrics["test"]["held_out"] = held_out
    write_json(args.metrics, metrics)
    _write_csv(args.pred_plot, plot_rows(splits["test"], preds["test"], cfg.plot_points))
    radius = [dict(r, split="test") for r in plot_rows(splits["test"], preds["test"], cfg.plot_points)]
    radius += [dict(r, split="ood") for r in plot_rows(splits["ood"], preds["ood"], cfg.plot_points // 4 or 1)]
    _write_csv(args.radius_plot, radius)


if __name__ == "__main__":
    run_stage("evaluate", main)
