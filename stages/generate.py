"""generate: params `data` + the tutorial's points -> train/val/test/ood/tutorial arrays + manifest."""

import argparse

from circlefit.config import PARAMS_FILE, as_dict, load_params
from circlefit.data import generate, load_tutorial, summarize
from circlefit.io import atomic_dir, dumps_json, save_array
from circlefit.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--tutorial", required=True, help="CSV with the tutorial's 36 points (x,y)")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()

    cfg = load_params(args.params).data
    ds = generate(cfg, load_tutorial(args.tutorial))
    manifest = {
        "params": {"data": as_dict(cfg)},
        "train_radius": ds.train_radius,
        "held_out": ds.held_out,
        "columns": ["x", "y", "label"],
        "dtype": "float32",
        "splits": summarize(ds),
    }
    with atomic_dir(args.out) as tmp:
        for name in ("train", "val", "test", "ood", "tutorial"):
            save_array(tmp / f"{name}.npy", getattr(ds, name))
        (tmp / "manifest.json").write_text(dumps_json(manifest), encoding="utf-8")


if __name__ == "__main__":
    run_stage("generate", main)
