"""normalize: fit z-score stats of x, y and the label on the train split only (no torch)."""

import argparse

from circlefit.config import PARAMS_FILE, load_params
from circlefit.data.normalize import fit_stats
from circlefit.data.store import load_split, split_file
from circlefit.io import write_json
from stages.edge import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--out", required=True, help="stats JSON")
    args = ap.parse_args()

    cfg = load_params(args.params).normalize
    train = load_split(args.data, "train", mmap=True)
    write_json(args.out, fit_stats(train, cfg.min_std, str(split_file(args.data, "train"))).to_json())


if __name__ == "__main__":
    run_stage("normalize", main)
