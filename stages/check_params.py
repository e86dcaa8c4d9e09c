"""check_params: validate the whole params file before any other stage runs (no outputs).

Every stage validates the whole file too, but DVC only runs a stage when a param it declares
changed: a stray top-level key (`seed: 1`, or `lr: 0.1` indented one level too little) is
declared by none, so without this stage `dvc repro` would ignore it and say "up to date". This
stage declares the whole file and comes first in dvc.yaml, so DVC runs it, and stops on its
error, before it deletes any other stage's outputs. `train.device: cuda` is checked here too
(importing torch only then), so a machine without CUDA fails before train's outputs are deleted.
"""

import argparse

from circlefit.config import PARAMS_FILE, load_params
from circlefit.device import resolve_device
from stages.edge import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=PARAMS_FILE)
    args = ap.parse_args()
    params = load_params(args.params)
    if params.train.device == "cuda":
        resolve_device(params.train.device, args.params)


if __name__ == "__main__":
    run_stage("check_params", main)
