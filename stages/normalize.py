"""normalize: fit z-score stats of x, y and the label on the train split only (no torch)."""

import argparse
from pathlib import Path

from circlefit.config import PARAMS_FILE, load_params
from circlefit.io import load_array, write_json
from circlefit.normalize import fit_stats
from circlefit.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--out", required=True, help="stats JSON")
    args = ap.parse_args()

    cfg = load_params(args.params).normalize
    train_path = Path(args.data) / "train.npy"
    stats = fit_stats(load_array(train_path, 3, mmap=True), cfg.min_std, str(train_path))
    write_json(args.out, stats.to_json())


if __name__ == "__main__":
    run_stage("normalize", main)
