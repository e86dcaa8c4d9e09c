"""evaluate: metrics on test, out-of-domain ring and the tutorial's points, plus plot data (numpy only, no torch)."""

import argparse

from circlefit.config import PARAMS_FILE, load_params
from circlefit.data.normalize import read_stats
from circlefit.data.store import load_split, read_manifest
from circlefit.evaluate import evaluate, plot_data
from circlefit.io import write_json, write_table
from circlefit.model.weights import load_weights
from stages.edge import run_stage


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
    splits = {name: load_split(args.data, name) for name in ("test", "ood", "tutorial")}
    stats = read_stats(args.stats)
    model = load_weights(args.model)
    metrics, preds = evaluate(model, splits, stats.label_mean, read_manifest(args.data), cfg)
    pred_rows, radius_rows = plot_data(splits, preds, cfg.plot_points)
    write_json(args.metrics, metrics)
    write_table(args.pred_plot, pred_rows)
    write_table(args.radius_plot, radius_rows)


if __name__ == "__main__":
    run_stage("evaluate", main)
