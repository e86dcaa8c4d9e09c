"""lstsq on CUDA against the CPU, on the same rows: wall time, and the same weights bit for bit.

    python bench/gpu_lstsq.py                      # a CUDA machine: n = 10⁶ and 10⁷, a few minutes
    python bench/gpu_lstsq.py --sizes 20000        # no GPU: the device side runs on torch's CPU device

For each n (data.n; default params otherwise) the rows are generated once, then trained with
circlefit.train.train on train.device cuda and on the CPU, in this process, alternately (a
small training on the GPU first pays CUDA's one-off start). The CPU side runs as the train stage
does: train.threads worker threads (--threads, default every core; recorded) over a
single-threaded BLAS. Per run: wall time (and the candidate selection's), where it ran
(summary.json's device and device_name), and the sha256 of the weights file it would store
(circlefit.model.weights.save_weights); then whether the hashes and the loss curves are equal.
Without a GPU the device side runs the same torch code path on torch's CPU device, swapped in
as tests/test_lstsq.py does (train.device cpu takes the numpy path), so every check still runs;
its time is then no GPU's.

--budget-s: a run whose time, projected linearly in n from the same device's previous size,
would end past the budget is skipped and recorded as such, so the script ends inside one device
call. Writes bench/results/gpu_lstsq.json (--out) naming the GPU and the CPU; prints a summary
table. Exit status 1 if any weights or curves differ.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read as numpy loads: as the train stage runs (stages/edge.py)

import argparse
import contextlib
import hashlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, ROOT, save

from circlefit import config
from circlefit.config import Params, load_params
from circlefit.data.generate import generate, load_tutorial
from circlefit.data.normalize import Stats, fit_stats
from circlefit.evaluate import regression_metrics
from circlefit.model.weights import save_weights
from circlefit.numeric import mlp64
from circlefit.numeric.backend import TorchBackend
from circlefit.train import Rows, TrainResult, lstsq, train

EVAL_ROWS = 1 << 16  # test rows scored per size: the weights are the point here, not the metric


def weights_sha256(result: TrainResult) -> str:
    """sha256 of the weights file the train stage would write for this result."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        save_weights(result.weights, path)
        return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def on(device: str) -> Iterator[str]:
    """What train() takes for `device`: "cpu" (numpy), "cuda", or "torch-cpu" (the torch path on the CPU)."""
    if device != "torch-cpu":
        yield device
        return
    chosen = lstsq._backend
    lstsq._backend = lambda *args: TorchBackend("cpu")  # type: ignore[assignment]
    try:
        yield "cpu"
    finally:
        lstsq._backend = chosen


def timed_train(params: Params, stats: Stats, rows: Rows, device: str) -> tuple[dict[str, Any], TrainResult]:
    with on(device) as resolved:
        t0 = time.perf_counter()
        result = train(params.train, params.model, stats, rows, resolved)
        wall = time.perf_counter() - t0
    facts = {k: result.summary.get(k) for k in ("device", "device_name", "threads", "directions", "train_rows")}
    run = {"wall_s": wall, "select_s": result.timing.get("select_s"), "weights_sha256": weights_sha256(result)}
    return run | facts, result


class Budget:
    """Seconds left for the runs; a run projected (linear in n from the same side's last run) past them is refused."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds
        self.last: dict[str, tuple[int, float]] = {}

    def refuse(self, side: str, n: int) -> str | None:
        if side not in self.last:
            return None
        prev_n, prev_s = self.last[side]
        projected, left = prev_s * n / prev_n, self.end - time.perf_counter()
        return f"projected {projected:.0f} s, {left:.0f} s of the budget left" if projected > left else None

    def record(self, side: str, n: int, seconds: float) -> None:
        self.last[side] = (n, seconds)


def measure(n: int, device: str, params: Params, budget: Budget) -> dict[str, Any]:
    """Both devices on the same n rows; the CPU result's test RMSE on the first EVAL_ROWS test rows."""
    t0 = time.perf_counter()
    ds = generate(config.replace(params.data, n=n), load_tutorial(ROOT / "data/tutorial36.csv"))
    stats, rows = fit_stats(ds.train, params.normalize.min_std), Rows(ds.train, ds.val)
    row: dict[str, Any] = {"n": n, "generate_s": time.perf_counter() - t0}
    results: dict[str, TrainResult] = {}
    for side, dev in (("device", device), ("cpu", "cpu")):
        if (why := budget.refuse(side, n)) is not None:
            row[side] = {"skipped": why}
            print(f"n {n}: {side} skipped, {why}", flush=True)
            continue
        row[side], results[side] = timed_train(params, stats, rows, dev)
        budget.record(side, n, row[side]["wall_s"])
        print(f"n {n}: {side} ({dev}) {row[side]['wall_s']:.2f} s, sha256 {row[side]['weights_sha256'][:16]}…",
              flush=True)  # fmt: skip
    if len(results) == 2:
        row["bitwise_equal"] = row["device"]["weights_sha256"] == row["cpu"]["weights_sha256"]
        row["curves_equal"] = results["device"].curve == results["cpu"].curve
        row["speedup"] = row["cpu"]["wall_s"] / row["device"]["wall_s"]
    if results:
        test, weights = ds.test[:EVAL_ROWS], next(iter(results.values())).weights
        row["test_rmse"] = regression_metrics(mlp64.predict(weights, test[:, :2]), test)["rmse"]
    return row


def table(rows: list[dict[str, Any]], device_name: str, threads: int) -> str:
    head = f"| n | {device_name} s | CPU s ({threads} threads) | CPU ÷ device | weights bitwise equal | curves equal |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[s]['wall_s']:.2f}" if "wall_s" in r[s] else "skipped" for s in ("device", "cpu")]
        speed = f"{r['speedup']:.1f}×" if "speedup" in r else "—"
        lines.append(f"| {r['n']:,} | {cells[0]} | {cells[1]} | {speed} | {r.get('bitwise_equal', '—')} "
                     f"| {r.get('curves_equal', '—')} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**6, 10**7], help="data.n")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="train.threads of the CPU side")
    ap.add_argument("--budget-s", type=float, default=420.0, help="seconds for all the runs (see above)")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_lstsq.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "torch-cpu"
    device_name = torch.cuda.get_device_name() if cuda else "torch-cpu"
    params = load_params(ROOT / "params.yaml")
    params = config.replace(params, train=config.replace(params.train, threads=args.threads))
    budget = Budget(args.budget_s)
    t0 = time.perf_counter()
    ds = generate(params.data, load_tutorial(ROOT / "data/tutorial36.csv"))  # the default data: warms the device up
    timed_train(params, fit_stats(ds.train, params.normalize.min_std), Rows(ds.train, ds.val), device)
    warmup = time.perf_counter() - t0
    print(f"{device_name}: warm-up training at the default n in {warmup:.2f} s; CPU side on {args.threads} threads")
    rows = [measure(n, device, params, budget) for n in args.sizes]
    payload = {
        "gpu": torch.cuda.get_device_name() if cuda else None, "device": device, "device_name": device_name,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "threads": args.threads,
        "warmup_s": warmup, "budget_s": args.budget_s, "sizes": rows,
    }  # fmt: skip
    print(table(rows, device_name, args.threads))
    print(save("gpu_lstsq", payload, args.out))
    if any(r.get("bitwise_equal") is False or r.get("curves_equal") is False for r in rows):
        print("gpu_lstsq: the device's weights or curves differ from the CPU's", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
