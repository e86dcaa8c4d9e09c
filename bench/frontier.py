"""The frontier: lstsq's accuracy and training time against width, the current method beside a baseline revision.

    python bench/frontier.py                       # widths 64…1024, seeds 0 1 2, baseline 868744e
    python bench/frontier.py --widths 64 --seeds 0 --repeats 1 --targets sin_cos   # a smoke run

For every width (model.hidden [w]) and data seed (data.seed; default data otherwise): test RMSE,
max abs error, the out-of-domain ring's RMSE, the chosen K and the training time (the median of
--repeats calls of circlefit.train.train, in process). The baseline is the same measurement
through the baseline revision's own API: a temporary `git worktree` of --baseline (removed at the
end) serves a subprocess, bench/frontier_baseline.py, that trains with its `circlefit.lstsq.run`
and predicts with its `circlefit.reference`, on the very rows this process generated. Both are
scored by circlefit.evaluate.regression_metrics. Current and baseline runs alternate repeat by
repeat, so drift in the machine hits both. Each method trains as its train stage does: the
current one on train.threads worker threads over a single-threaded BLAS (stages/edge.py), the
baseline with the BLAS's default thread count (its stage set none).

Then: the log-log slope of test RMSE against width for each method, and the (K/N)² prediction
scaled from width 256 (each ridge function's interpolation error, with K the chosen directions
and N the width). "Other targets": the default data's rows relabelled (as tests/test_lstsq.py
does) at width 256. Writes bench/results/frontier.json and frontier.png (--out; the plot needs
the `bench` extra) and prints the Markdown tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read as numpy loads: as the train stage runs (stages/edge.py)

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, ROOT, machine, save, summarize

from circlefit import config
from circlefit.config import Params, load_params
from circlefit.data.generate import Dataset, generate, load_tutorial
from circlefit.data.normalize import fit_stats
from circlefit.evaluate import regression_metrics
from circlefit.numeric import mlp64
from circlefit.train import Rows, train

Target = Callable[[np.ndarray, np.ndarray], np.ndarray]
TARGETS: dict[str, tuple[str, Target]] = {
    "sin_cos": ("100·sin(x/8)·cos(y/8)", lambda x, y: 100 * np.sin(x / 8) * np.cos(y / 8)),
    "abs_x_plus_y2": ("|x| + y²/20", lambda x, y: np.abs(x) + y**2 / 20),
    "bump": ("100·exp(-((x-5)² + (y+3)²)/50)", lambda x, y: 100 * np.exp(-((x - 5) ** 2 + (y + 3) ** 2) / 50)),
}
METHODS = ("current", "baseline")
REFERENCE_WIDTH = 256  # the default width: the (K/N)² line goes through its measured RMSE


def relabel(ds: Dataset, target: Target) -> Dataset:
    """The same rows with another label: the method must learn it from the rows alone."""

    def one(rows: np.ndarray) -> np.ndarray:
        out = rows.copy()
        out[:, 2] = target(rows[:, 0].astype(np.float64), rows[:, 1].astype(np.float64)).astype(np.float32)
        return out

    return dataclasses.replace(ds, train=one(ds.train), val=one(ds.val), test=one(ds.test), ood=one(ds.ood))


class Baseline:
    """bench/frontier_baseline.py in a worktree of `rev`: one training per `fit` call, in one long-lived process."""

    def __init__(self, rev: str, tmp: Path) -> None:
        self.rev = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
        self.tree, self.tmp = tmp / f"baseline-{self.rev[:8]}", tmp
        _git("worktree", "add", "--detach", "--quiet", str(self.tree), self.rev)
        env = dict(os.environ, PYTHONPATH=str(self.tree), CIRCLEFIT_LOG="WARNING")
        del env["OPENBLAS_NUM_THREADS"]  # its train stage set no BLAS thread count: the BLAS's own
        script = Path(__file__).with_name("frontier_baseline.py")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.tree)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self.calls = 0

    def fit(self, rows: Path, hidden: int, ds: Dataset) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.calls += 1
        out = self.tmp / f"pred-{self.calls}.npz"
        self.proc.stdin.write(json.dumps({"rows": str(rows), "hidden": [hidden], "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the baseline process ({self.rev[:8]}) died; its error is above")
        answer = json.loads(line)
        with np.load(out) as pred:
            return {**answer, **_scores(pred["test"], pred["ood"], ds)}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()
        _git("worktree", "remove", "--force", str(self.tree))


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _scores(test_pred: np.ndarray, ood_pred: np.ndarray, ds: Dataset) -> dict[str, float]:
    test = regression_metrics(test_pred, ds.test)
    return {"test_rmse": test["rmse"], "max_abs_err": test["max_abs_err"],
            "ring_rmse": regression_metrics(ood_pred, ds.ood)["rmse"]}  # fmt: skip


def fit_current(params: Params, hidden: int, ds: Dataset) -> dict[str, Any]:
    model = config.replace(params.model, hidden=(hidden,))
    stats = fit_stats(ds.train, params.normalize.min_std)
    t0 = time.perf_counter()
    result = train(params.train, model, stats, Rows(ds.train, ds.val))
    wall = time.perf_counter() - t0
    w = result.weights
    scores = _scores(mlp64.predict(w, ds.test[:, :2]), mlp64.predict(w, ds.ood[:, :2]), ds)
    return {"wall_s": wall, "directions": result.summary["directions"], **scores}


class Bench:
    def __init__(self, params: Params, baseline: Baseline, tmp: Path) -> None:
        self.params, self.baseline, self.tmp = params, baseline, tmp
        self.tutorial = load_tutorial(ROOT / "data/tutorial36.csv")

    def data(self, seed: int, target: str | None = None) -> tuple[Dataset, Path]:
        """The default data at `seed` (relabelled by `target`), and its splits saved for the baseline."""
        ds = generate(config.replace(self.params.data, seed=seed), self.tutorial)
        if target is not None:
            ds = relabel(ds, TARGETS[target][1])
        path = self.tmp / f"rows-{seed}-{target or 'default'}.npz"
        if not path.exists():
            np.savez(path, train=ds.train, val=ds.val, test=ds.test, ood=ds.ood)
        return ds, path

    def point(self, width: int, seeds: list[int], repeats: int, target: str | None = None) -> dict[str, Any]:
        """Both methods at one width over the seeds; repeats alternate current, baseline."""
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for seed in seeds:
            ds, path = self.data(seed, target)
            for rep in range(repeats):
                for method in METHODS:
                    r = (
                        fit_current(self.params, width, ds)
                        if method == "current"
                        else self.baseline.fit(path, width, ds)
                    )
                    runs[method].append({"seed": seed, "repeat": rep, **r})
        out: dict[str, Any] = {"width": width, **({"target": target} if target else {})}
        for method, rs in runs.items():
            first = [r for r in rs if r["repeat"] == 0]  # the weights do not change between repeats
            out[method] = {
                "runs": rs,
                **{k: summarize([r[k] for r in first]) for k in ("test_rmse", "max_abs_err", "ring_rmse")},
                "train_s": summarize([statistics.median(r["wall_s"] for r in rs if r["seed"] == s) for s in seeds]),
                "directions": [r["directions"] for r in first],
            }
        out["ratio"] = {k: out["current"][k]["median"] / out["baseline"][k]["median"]
                        for k in ("test_rmse", "max_abs_err", "ring_rmse", "train_s")}  # fmt: skip
        c, b = out["current"], out["baseline"]
        print(f"w {width:5} {target or '':14} test RMSE {c['test_rmse']['median']:.4g} vs "
              f"{b['test_rmse']['median']:.4g}, train {c['train_s']['median']:.2f} s vs "
              f"{b['train_s']['median']:.2f} s, K {c['directions']} vs {b['directions']}", flush=True)  # fmt: skip
        return out


def scaling(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: the log-log slope of test RMSE against width, and the (K/N)² prediction from width 256."""
    out: dict[str, Any] = {}
    widths = [p["width"] for p in points]
    for method in METHODS:
        rmse = [p[method]["test_rmse"]["median"] for p in points]
        k = [Counter(p[method]["directions"]).most_common(1)[0][0] for p in points]
        entry: dict[str, Any] = {"directions": k}
        if len(points) > 1:
            entry["slope"] = float(np.polyfit(np.log(widths), np.log(rmse), 1)[0])
        if REFERENCE_WIDTH in widths:
            i = widths.index(REFERENCE_WIDTH)
            ref = rmse[i] / (k[i] / widths[i]) ** 2
            entry["k_over_n_squared"] = [ref * (kk / w) ** 2 for kk, w in zip(k, widths, strict=True)]
        out[method] = entry
    return out


def tables(result: dict[str, Any]) -> str:
    pts, sc = result["widths"], result["scaling"]
    med = lambda p, m, k: p[m][k]["median"]  # noqa: E731
    lines = [
        f"Test RMSE, max abs error and OOD ring RMSE (median over data seeds {result['seeds']}): current vs "
        f"baseline {result['baseline'][:8]}; ratio = current / baseline; (K/N)² scaled from width {REFERENCE_WIDTH}, "
        "K the chosen directions.", "",
        "| width | test RMSE | ratio | (K/N)² from 256 | max abs error | ratio | ring RMSE | ratio | K |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for i, p in enumerate(pts):
        pred = sc["current"].get("k_over_n_squared")
        kn = f"{pred[i]:.4f}" if pred else "—"
        cells = [f"{med(p, 'current', k):.4f} vs {med(p, 'baseline', k):.4f} | {p['ratio'][k]:.2f}"
                 for k in ("test_rmse", "max_abs_err", "ring_rmse")]  # fmt: skip
        ks = f"{sc['current']['directions'][i]} vs {sc['baseline']['directions'][i]}"
        lines.append(f"| {p['width']} | {cells[0]} | {kn} | {cells[1]} | {cells[2]} | {ks} |")
    slopes = {m: sc[m].get("slope") for m in METHODS}
    if slopes["current"] is not None:
        lines += ["", f"log-log slope of test RMSE against width: current {slopes['current']:.2f}, baseline "
                  f"{slopes['baseline']:.2f}; (K/N)² at a fixed K: -2."]  # fmt: skip
    lines += ["", "| width | train s, current | train s, baseline | ratio |", "|---|---|---|---|"]
    for p in pts:
        lines.append(f"| {p['width']} | {med(p, 'current', 'train_s'):.2f} | {med(p, 'baseline', 'train_s'):.2f} "
                     f"| {p['ratio']['train_s']:.2f} |")  # fmt: skip
    if result["targets"]:
        lines += ["", f"Other targets, width {REFERENCE_WIDTH} (the default data's rows relabelled):", "",
                  "| target | test RMSE | ratio | max abs error | ratio | ring RMSE | ratio |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for p in result["targets"]:
            cells = [f"{med(p, 'current', k):.4g} vs {med(p, 'baseline', k):.4g} | {p['ratio'][k]:.2f}"
                     for k in ("test_rmse", "max_abs_err", "ring_rmse")]  # fmt: skip
            name = TARGETS[p["target"]][0].replace("|", "\\|")  # |x| inside a Markdown table
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts, sc = result["widths"], result["scaling"]
    widths = [p["width"] for p in pts]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, color in zip(METHODS, ("C0", "C1"), strict=True):
        med = [p[method]["test_rmse"]["median"] for p in pts]
        err = [[m - p[method]["test_rmse"]["min"] for m, p in zip(med, pts, strict=True)],
               [p[method]["test_rmse"]["max"] - m for m, p in zip(med, pts, strict=True)]]  # fmt: skip
        name = "current" if method == "current" else f"baseline {result['baseline'][:8]}"
        ax.errorbar(widths, med, yerr=err, marker="o", color=color, capsize=3, label=name)
        if "k_over_n_squared" in sc[method]:
            ax.plot(widths, sc[method]["k_over_n_squared"], ":", color=color, label=f"(K/N)², {name}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_yscale("log")
    ax.set_xlabel("width N (model.hidden [N])")
    ax.set_ylabel("test RMSE (median over seeds; min–max)")
    ax.set_title(f"lstsq: test RMSE against width; {machine()['cpu']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data.seed values")
    ap.add_argument("--repeats", type=int, default=3, help="trainings timed per width and seed (median)")
    ap.add_argument("--baseline", default="868744e", help="git revision of the baseline (its API: circlefit.lstsq.run)")
    ap.add_argument("--targets", nargs="*", choices=sorted(TARGETS), default=sorted(TARGETS),
                    help=f"other targets at width {REFERENCE_WIDTH}")  # fmt: skip
    ap.add_argument("--threads", type=int, help="train.threads of the current method (default: params.yaml's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "frontier.json", help="the JSON; the plot goes beside it")
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    if args.threads:
        params = config.replace(params, train=config.replace(params.train, threads=args.threads))
    with tempfile.TemporaryDirectory(prefix="frontier-") as tmp:
        baseline = Baseline(args.baseline, Path(tmp))
        try:
            bench = Bench(params, baseline, Path(tmp))
            points = [bench.point(w, args.seeds, args.repeats) for w in args.widths]
            targets = [bench.point(REFERENCE_WIDTH, args.seeds, 1, t) for t in args.targets]
        finally:
            baseline.close()
    result = {
        "baseline": baseline.rev, "seeds": args.seeds, "repeats": args.repeats, "threads": params.train.threads,
        "widths": points, "scaling": scaling(points), "targets": targets,
    }  # fmt: skip
    plot(result, args.out.with_suffix(".png"))
    print(tables(result))
    print(save("frontier", result, args.out))


if __name__ == "__main__":
    main()
