"""Accuracy frontier: test RMSE vs training wall time for a few architectures and optimizers.

Usage: python bench/frontier.py [--threads 2] [--seeds 0 1 2] [--all-optimizers] [--budgets]
Default disk data; each configuration trains with circlefit's library on CPU. Writes
bench/results/frontier.json and bench/results/frontier.png (needs the `bench` extra: matplotlib).
"""

from __future__ import annotations

import argparse

import torch
from common import RESULTS, ROOT, save, summarize

from circlefit import config
from circlefit.config import load_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.evaluate import predict, regression_metrics
from circlefit.numeric.mlp64 import Weights
from circlefit.train import train

ARCHS = [(64,), (64, 64), (128, 128), (256,), (512,)]
# name -> overrides of params.train: the default lstsq method, and the gradient method it replaced
# (adam 1000 epochs + 1000 L-BFGS steps was the default before; --all-optimizers adds two more).
OPTIMIZERS = {
    "lstsq": {"method": "lstsq"},
    "adam_1000+lbfgs_1000": {"method": "gradient", "optimizer": "adam", "epochs": 1000, "lbfgs_steps": 1000},
}
MORE_OPTIMIZERS = {
    "adam_2000": {"method": "gradient", "optimizer": "adam", "epochs": 2000, "lbfgs_steps": 0},
    "radam_1000+lbfgs_1000": {"method": "gradient", "optimizer": "radam", "epochs": 1000, "lbfgs_steps": 1000},
}
# What each second buys with the default network and recipe: both phases scaled together.
BUDGET_SERIES = "1x256 adam+lbfgs, steps scaled"
BUDGETS = (0.125, 0.25, 0.5, 1.0, 2.0)


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for series in sorted({r["series"] for r in rows}):
        pts = sorted(
            (r["wall_s"]["median"], r["test_rmse"]["median"], r["label"]) for r in rows if r["series"] == series
        )
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            label=series,
            ls="--" if series == BUDGET_SERIES else "-",
        )
        for x, y, label in pts:
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("training wall time (s, 2 CPU threads)")
    ax.set_ylabel("test RMSE (log)")
    ax.set_yscale("log")
    ax.set_title("circlefit accuracy frontier (default disk, r ≤ 20)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--all-optimizers", action="store_true", help="also adam_2000 and radam+lbfgs (gradient)")
    ap.add_argument("--budgets", action="store_true", help="also the gradient default at x0.125..x2 steps")
    args = ap.parse_args()
    optimizers = OPTIMIZERS | (MORE_OPTIMIZERS if args.all_optimizers else {})
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    ds = generate(params.data, load_tutorial(ROOT / "data/tutorial36.csv"))
    stats = fit_stats(ds.train, params.normalize.min_std)
    runs = [
        (hidden, opt, opt, "x".join(map(str, hidden)), over) for hidden in ARCHS for opt, over in optimizers.items()
    ]
    for b in BUDGETS if args.budgets else ():
        steps = {"method": "gradient", "epochs": round(1000 * b), "lbfgs_steps": round(1000 * b)}
        runs.append(((256,), f"adam_{steps['epochs']}+lbfgs_{steps['lbfgs_steps']}", BUDGET_SERIES, f"x{b:g}", steps))
    rows = []
    for hidden, opt, series, label, over in runs:
        mcfg = config.replace(params.model, hidden=hidden)
        walls, rmses, maxes = [], [], []
        for seed in args.seeds:  # lstsq ignores the seed: its repeats time the same fit
            tcfg = config.replace(params.train, seed=seed, **over)
            res = train(tcfg, mcfg, stats, ds.train, ds.val, torch.device("cpu"))
            walls.append(res.wall_s)
            m = regression_metrics(predict(Weights.of(res.model), ds.test[:, :2]), ds.test)
            rmses.append(m["rmse"])
            maxes.append(m["max_abs_err"])
        row = {"hidden": list(hidden), "optimizer": opt, "series": series, "label": label,
               "wall_s": summarize(walls), "test_rmse": summarize(rmses), "test_max_abs_err": summarize(maxes),
               "parameters": sum(p.numel() for p in res.model.net.parameters())}  # fmt: skip
        rows.append(row)
        print(hidden, opt, f"rmse {row['test_rmse']['median']:.4f} max {row['test_max_abs_err']['median']:.3f} "
              f"wall {row['wall_s']['median']:.2f}s", flush=True)  # fmt: skip
    plot(rows, RESULTS / "frontier.png")
    print(save("frontier", {"threads": args.threads, "seeds": args.seeds, "rows": rows}))


if __name__ == "__main__":
    main()
