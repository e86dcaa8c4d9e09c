"""Fit quality and training cost: circlefit (lstsq) vs its gradient method, the tutorial's recipes and a constant.

Usage: python bench/fit_quality.py [--seeds 0 1 2 3 4] [--threads 2] [--n ROWS]
Same data for every recipe; seeds vary the training only. --n sets the disk's data.n (default:
params.yaml's; `--n 512 --seeds 0` is a smoke run). Writes bench/results/fit_quality.json (--out).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import ROOT, save, summarize
from recipes import tutorial_recipe

from circlefit import config
from circlefit.config import load_params
from circlefit.data.generate import Dataset, generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.evaluate import regression_metrics
from circlefit.numeric.mlp64 import predict
from circlefit.train import Rows, train

Predictor = Callable[[np.ndarray], np.ndarray]
# The "optimized" recipe with its epochs cut to fit circlefit's ≤ 20 s training budget: on the
# default disk one batch-2 epoch (3277 steps) takes ≈ 1.6 s on 2 CPU threads (bench/results/fit_quality.json:
# 100 epochs in 158 s), so 10 epochs ≈ 16 s.
TIME_MATCHED_EPOCHS = 10


def _torch_predictor(module: torch.nn.Module) -> Predictor:
    def f(xy: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(xy)))[:, 0].numpy()

    return f


def fit(recipe: str, ds: Dataset, seed: int, params) -> tuple[float, Predictor]:
    t0 = time.perf_counter()
    if recipe == "constant_mean":
        m = float(ds.train[:, 2].astype(np.float64).mean())
        pred: Predictor = lambda xy: np.full(xy.shape[0], m, dtype=np.float32)  # noqa: E731
    elif recipe.startswith("tutorial_"):
        epochs = TIME_MATCHED_EPOCHS if recipe == "tutorial_optimized_time_matched" else None
        module = tutorial_recipe(ds.train, optimized=recipe != "tutorial_initial", seed=seed, epochs=epochs)
        pred = _torch_predictor(module)
    else:  # circlefit (the default, train.method lstsq) or circlefit_gradient (the method it replaced)
        stats = fit_stats(ds.train, params.normalize.min_std)
        method = "gradient" if recipe == "circlefit_gradient" else params.train.method
        tcfg = config.replace(params.train, seed=seed, method=method)
        weights = train(tcfg, params.model, stats, Rows(ds.train, ds.val)).weights
        pred = lambda xy: predict(weights, xy)  # noqa: E731
    return time.perf_counter() - t0, pred


def _finite_summary(values: list[float]) -> dict[str, float]:
    """Median and spread of the finite values, and how many runs diverged (NaN/inf)."""
    finite = [v for v in values if math.isfinite(v)]
    base = summarize(finite) if finite else {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {**base, "non_finite": len(values) - len(finite)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, help="data.n of the disk (default: params.yaml's)")
    ap.add_argument("--out", type=Path, help="default: bench/results/fit_quality.json")
    ap.add_argument("--slow-seeds", type=int, nargs="+", help="seeds for the batch-2 recipe on the disk "
                    "(327k steps each, minutes per seed); default: --seeds")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    params = config.replace(params, train=config.replace(params.train, threads=args.threads))
    if args.n:
        params = config.replace(params, data=config.replace(params.data, n=args.n))
    tutorial_xy = load_tutorial(ROOT / "data/tutorial36.csv")
    datasets = {
        "tutorial36": generate(config.replace(params.data, source="tutorial"), tutorial_xy),
        "disk": generate(params.data, tutorial_xy),
    }
    recipes = [
        "tutorial_initial",
        "tutorial_optimized",
        "tutorial_optimized_time_matched",
        "constant_mean",
        "circlefit_gradient",
        "circlefit",
    ]
    rows = []
    for dname, ds in datasets.items():
        # A model fitted to the tutorial's 36 points is also scored on the disk's test split (DESIGN.md's
        # "RMSE on a disk r ≤ 20"): how far the tutorial's data lets any recipe generalize.
        disk = datasets["disk"]
        evals = {
            "tutorial36": {"fit_36_points": ds.tutorial, "disk_test": disk.test},
            "disk": {"test": ds.test, "ood": ds.ood},
        }[dname]
        for recipe in recipes:
            slow = dname == "disk" and recipe == "tutorial_optimized" and args.slow_seeds
            for seed in args.slow_seeds if slow else args.seeds:
                wall, pred = fit(recipe, ds, seed, params)
                row = {"dataset": dname, "recipe": recipe, "seed": seed, "train_wall_s": wall}
                for ename, rows_ in evals.items():
                    m = regression_metrics(pred(rows_[:, :2]), rows_)
                    row[f"{ename}_rmse"], row[f"{ename}_max_abs_err"] = m["rmse"], m["max_abs_err"]
                rows.append(row)
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    table = []
    for dname in datasets:
        ours = [r for r in rows if r["dataset"] == dname and r["recipe"] == "circlefit"]
        key = "fit_36_points_rmse" if dname == "tutorial36" else "test_rmse"
        ours_med = summarize([r[key] for r in ours])["median"]
        for recipe in recipes:
            rs = [r for r in rows if r["dataset"] == dname and r["recipe"] == recipe]
            entry = {"dataset": dname, "recipe": recipe}
            for k in rs[0]:
                if k.endswith(("_rmse", "_max_abs_err", "_wall_s")):
                    entry[k] = _finite_summary([r[k] for r in rs])
            entry["ratio_baseline_rmse_over_circlefit"] = entry[key]["median"] / ours_med
            entry["ratios_over_circlefit"] = {
                k: entry[k]["median"] / summarize([r[k] for r in ours])["median"]
                for k in rs[0]
                if k.endswith(("_rmse", "_wall_s")) and all(r[k] for r in ours)
            }
            table.append(entry)
    payload = {"seeds": args.seeds, "threads": args.threads, "n": params.data.n, "runs": rows, "table": table}
    print(save("fit_quality", payload, args.out))


if __name__ == "__main__":
    main()
