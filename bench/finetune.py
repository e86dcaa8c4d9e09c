"""Does fine-tuning all layers after `lstsq` pay? L-BFGS and Adam, float64 and float32, from its weights.

Usage: python bench/finetune.py [--threads 2]
Default params and data; writes bench/results/finetune.json (test RMSE, max error, extra seconds).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from common import ROOT, save

from circlefit.config import load_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.numeric.mlp64 import Weights, predict
from circlefit.train import train

RUNS = (("lbfgs", 50), ("lbfgs", 200), ("adam_1e-4", 500), ("adam_1e-5", 500))


def _errors(model: torch.nn.Module, rows: np.ndarray) -> dict[str, float]:
    e = predict(Weights.of(model), rows[:, :2]) - rows[:, 2]
    return {"test_rmse": float(np.sqrt(np.mean(e**2))), "test_max_abs_err": float(np.abs(e).max())}


def _tune(net: torch.nn.Module, z: torch.Tensor, y: torch.Tensor, name: str, steps: int) -> None:
    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(net(z), y)

    if name == "lbfgs":
        opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=steps, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0)  # fmt: skip

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = loss()
            value.backward()
            return value

        opt.step(closure)
        return
    adam = torch.optim.Adam(net.parameters(), lr=float(name.split("_")[1]))
    for _ in range(steps):
        adam.zero_grad()
        loss().backward()
        adam.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    ds = generate(params.data, load_tutorial(ROOT / "data/tutorial36.csv"))
    stats = fit_stats(ds.train, params.normalize.min_std)
    res = train(params.train, params.model, stats, ds.train, ds.val, torch.device("cpu"))
    rows = [{"run": "lstsq", "dtype": "float64", "extra_s": 0.0, "train_s": res.wall_s, **_errors(res.model, ds.test)}]
    x, y = torch.from_numpy(ds.train[:, :2]), torch.from_numpy(ds.train[:, 2:])
    for dtype in (torch.float64, torch.float32):
        for name, steps in RUNS:
            model = copy.deepcopy(res.model).to(dtype)
            t0 = time.perf_counter()
            _tune(model.net, model.standardize(x.to(dtype)), model.standardize_label(y.to(dtype)), name, steps)
            extra = time.perf_counter() - t0
            row = {"run": f"{name} {steps}", "dtype": str(dtype), "extra_s": extra, **_errors(model.float(), ds.test)}
            rows.append(row)
            print(row, flush=True)
    print(save("finetune", {"threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
