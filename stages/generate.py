"""generate: params `data` + the tutorial's points -> train/val/test/ood/tutorial arrays + manifest."""

import argparse

from circlefit.config import PARAMS_FILE, load_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.store import write_dataset
from stages.edge import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--tutorial", required=True, help="CSV with the tutorial's 36 points (x,y)")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()

    cfg = load_params(args.params).data
    write_dataset(args.out, generate(cfg, load_tutorial(args.tutorial)), cfg)


if __name__ == "__main__":
    run_stage("generate", main)
