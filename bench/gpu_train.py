"""GPU training benchmark: eager vs CUDA graph vs torch.compile; fp32/TF32/bf16; n = 4096 … 16M.

    python bench/gpu_train.py                            # CUDA machine: every section, a few minutes
    python bench/gpu_train.py --device cpu --quick       # smoke test of the same code on CPU

Step times come from `circlefit.train.train` itself, the production loop (the gradient method): the
wall time between the 1st and 3rd evaluation callbacks (each ends in a device sync) over the steps
between them, so setup, warmup and graph capture are not counted. Each row runs phase 1 one way
(eager, static or graph), set by replacing the method's own choice (`gradient.choose_mode`).
The torch.compile rows compile `FastStep.body`, the step that train() captures. Every measurement
lands in --out (JSON) as soon as it is made; one that fails is recorded with its error and the
others go on. At the end the tables are printed, and a Markdown copy is written next to the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from circlefit import config  # noqa: E402
from circlefit.config import ModelConfig, Params, TrainConfig, load_params  # noqa: E402
from circlefit.data.generate import generate, load_tutorial  # noqa: E402
from circlefit.data.normalize import Stats, fit_stats  # noqa: E402
from circlefit.device import configure, resolve_device  # noqa: E402
from circlefit.evaluate import regression_metrics  # noqa: E402
from circlefit.io import atomic_file, write_json  # noqa: E402
from circlefit.model.network import build_model  # noqa: E402
from circlefit.numeric.mlp64 import predict  # noqa: E402
from circlefit.train import Rows as TrainRows  # noqa: E402
from circlefit.train import gradient, train  # noqa: E402
from circlefit.train.fast_step import FastStep  # noqa: E402
from circlefit.train.gradient import _optimizer, _schedule  # noqa: E402

REFERENCE_NET = (64, 64)  # the 2→64→64→1 ReLU net
Rows = tuple[np.ndarray, np.ndarray, np.ndarray, Stats]  # train, val, test, stats


@contextlib.contextmanager
def phase1(mode: str) -> Iterator[None]:
    """Phase 1 of the gradient method runs as `mode` ("eager", "static" or "graph") inside the block."""
    chosen = gradient.choose_mode
    gradient.choose_mode = lambda *args, **kw: mode  # type: ignore[assignment]
    try:
        yield
    finally:
        gradient.choose_mode = chosen


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.params: Params = load_params(args.params)
        self.device = torch.device(resolve_device(args.device, args.params))
        self.cuda = self.device.type == "cuda"
        self.threads = self.params.train.threads
        self.out: dict[str, Any] = {"args": vars(args), "errors": []}
        self.tutorial = load_tutorial(REPO / "data/tutorial36.csv")

    @property
    def default_n(self) -> int:
        return round(self.params.data.n * self.params.data.split.train)

    def save(self) -> None:
        write_json(self.args.out, self.out)

    def measure(self, section: str, what: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> None:
        """Run one measurement; record its row, or its error, and go on."""
        try:
            row = what | fn()
        except Exception as e:  # a benchmark reports what broke and carries on
            traceback.print_exc()
            row = what | {"error": f"{type(e).__name__}: {e}"[:300]}
            self.out["errors"].append({"section": section} | row)
        self.out.setdefault(section, []).append(row)
        self.save()
        print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
        if self.cuda:
            torch.cuda.empty_cache()

    def data(self, n_train: int) -> Rows:
        """n_train i.i.d. train rows (a prefix is a sample too), ≤ 65536 val/test rows, stats.

        Up to the default n this is exactly the pipeline's data (params.yaml's data section).
        """
        total = self.params.data.n
        if n_train > self.default_n:
            total = int(np.ceil(n_train / self.params.data.split.train)) + 16
        ds = generate(config.replace(self.params.data, n=total), self.tutorial)
        rows = ds.train[:n_train]
        return rows, ds.val[:65536], ds.test[:65536], fit_stats(rows, self.params.normalize.min_std)

    def tcfg(self, precision: str, device: torch.device | None = None, **over: Any) -> TrainConfig:
        """Train params for a run, with the process-wide settings (TF32, determinism) applied."""
        device = device or self.device
        configure(device.type, self.threads, precision)
        train_cfg = config.replace(self.params.train, method="gradient", device=device.type)
        return config.replace(train_cfg, gradient=config.replace(train_cfg.gradient, precision=precision, **over))

    def timed_train(self, precision: str, hidden: tuple[int, ...], rows: Rows, mode: str, k: int) -> dict[str, Any]:
        """ms per phase-1 step of train(): the 2k steps between its 1st and 3rd evaluation."""
        cfg = self.tcfg(precision, epochs=3 * k, eval_every=k, lbfgs_steps=0)
        g = cfg.gradient
        never_stop = config.replace(g.early_stopping, patience=0)
        cfg = config.replace(cfg, gradient=config.replace(g, early_stopping=never_stop))
        stamps: list[float] = []

        def stamp(_: object) -> None:
            stamps.append(time.perf_counter())

        mcfg = ModelConfig(hidden=hidden, activation=self.params.model.activation)
        with phase1(mode):
            res = train(cfg, mcfg, rows[3], TrainRows(rows[0], rows[1]), str(self.device), on_eval=stamp)
        ms = (stamps[2] - stamps[0]) / (2 * k) * 1e3
        return {"ms_per_step": ms, "gsamples_per_s": len(rows[0]) / ms / 1e6, "ran": res.summary["phase1_step"]}

    def compiled_step(self, precision: str, hidden: tuple[int, ...], rows: Rows, mode: str, k: int) -> dict[str, Any]:
        """ms per step of torch.compile(FastStep.body, mode=mode) after 4 compiling/warmup calls."""
        tcfg = self.tcfg(precision, epochs=k + 8)
        cfg = tcfg.gradient
        mcfg = ModelConfig(hidden=hidden, activation=self.params.model.activation)
        model = build_model(mcfg, rows[3], torch.Generator().manual_seed(tcfg.seed)).to(self.device)
        t = torch.from_numpy(np.ascontiguousarray(rows[0])).to(self.device)
        x, y = model.standardize(t[:, :2]), model.standardize_label(t[:, 2:])
        bf16 = precision == "bf16"
        autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=bf16, cache_enabled=False)

        def loss_on(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:  # as in circlefit.train.gradient
            with autocast:
                pred = model.net(xb)
            return torch.nn.functional.mse_loss(pred.float(), yb)

        def make_opt(ps: list[torch.nn.Parameter], cap: bool) -> torch.optim.Optimizer:
            return _optimizer(cfg, iter(ps), cap)

        def make_sched(o: torch.optim.Optimizer) -> Any:
            return _schedule(cfg, o, cfg.epochs)

        fast = FastStep(model.net, loss_on, x, y, make_opt, make_sched, cfg.epochs, cfg.epochs, capture=False)
        torch._dynamo.reset()
        step = torch.compile(fast.body, mode=mode)
        t0 = time.perf_counter()
        for _ in range(4):
            step()
        _sync(self.device)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(k):
            loss = step()
        _sync(self.device)
        ms = (time.perf_counter() - t0) / k * 1e3
        n = len(rows[0])
        return {"ms_per_step": ms, "gsamples_per_s": n / ms / 1e6, "compile_s": compile_s, "loss": float(loss)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def env(b: Bench) -> None:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(b.device),
        "threads": b.threads,
    }
    if b.cuda:
        prop = torch.cuda.get_device_properties(b.device)
        info["gpu"] = prop.name
        info["capability"] = f"{prop.major}.{prop.minor}"
        info["sms"] = prop.multi_processor_count
        info["memory_gib"] = round(prop.total_memory / 2**30, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    b.out["env"] = info
    b.save()
    print("  " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)


def small_cases(b: Bench) -> list[tuple[str, tuple[int, ...], int]]:
    """The issue's reference net at n = 4096, and the default params' model at their train rows."""
    return [("reference", REFERENCE_NET, 4096), ("default", b.params.model.hidden, b.default_n)]


def modes(b: Bench) -> tuple[str, ...]:
    return ("eager", "static", "graph") if b.cuda else ("eager", "static")


def step_time(b: Bench) -> None:
    k = 20 if b.quick else 500
    for name, hidden, n in small_cases(b):
        rows = b.data(n)
        for mode in modes(b):
            what = {"case": name, "hidden": list(hidden), "n": n, "mode": mode}
            b.measure("step_time", what, lambda m=mode, h=hidden, r=rows: b.timed_train("fp32", h, r, m, k))


def throughput(b: Bench) -> None:
    sizes = [1024, 4096] if b.quick else [4096, 65536, 1 << 20, 1 << 24]
    hidden = tuple(int(h) for h in b.args.hidden.split(","))
    train_all, val, test, _ = b.data(max(sizes))
    for n in sizes:
        rows = (train_all[:n], val, test, fit_stats(train_all[:n], b.params.normalize.min_std))
        k = 5 if b.quick else max(10, min(500, (1 << 26) // n))
        for precision in ("fp32", "tf32", "bf16"):
            for mode in ("eager", "graph") if b.cuda else ("eager", "static"):
                what = {"n": n, "hidden": list(hidden), "precision": precision, "mode": mode}
                b.measure(
                    "throughput", what, lambda p=precision, m=mode, r=rows, k=k: b.timed_train(p, hidden, r, m, k)
                )


def rmse(b: Bench) -> None:
    """Full default training (phase 1 + L-BFGS) per mode: test RMSE; graph twice (determinism)."""
    train_rows, val_rows, test_rows, stats = b.data(b.default_n)
    labels = [*modes(b), *(["graph", "cpu-eager"] if b.cuda and not b.quick else [])]
    weights: dict[str, list[torch.Tensor]] = {}

    def run(label: str) -> dict[str, Any]:
        device = torch.device("cpu") if label.startswith("cpu-") else b.device
        over = {"epochs": 60, "lbfgs_steps": 40} if b.quick else {}
        cfg = b.tcfg(b.params.train.gradient.precision, device, **over)
        t0 = time.perf_counter()
        with phase1(label.removeprefix("cpu-")):
            res = train(cfg, b.params.model, stats, TrainRows(train_rows, val_rows), device.type)
        wall = time.perf_counter() - t0
        pred = predict(res.weights, test_rows[:, :2])
        w = [torch.from_numpy(a) for layer in res.weights.layers for a in layer]
        row = {
            "test_rmse": regression_metrics(pred, test_rows)["rmse"],
            "best_val_loss": res.summary["best_val_loss"],
            "ran": res.summary["phase1_step"],
            "wall_s": wall,
        }
        if "eager" in weights:
            row["max_weight_diff_vs_eager"] = max(float((a - c).abs().max()) for a, c in zip(weights["eager"], w))  # noqa: B905
        if label in weights:  # a repeat: same params, same device
            row["bitwise_equal_to_first_run"] = all(torch.equal(a, c) for a, c in zip(weights[label], w))  # noqa: B905
        weights.setdefault(label, w)
        return row

    for i, label in enumerate(labels):
        what = {"mode": label, "hidden": list(b.params.model.hidden), "n": len(train_rows), "run": i}
        b.measure("rmse", what, lambda lb=label: run(lb))
    b.tcfg(b.params.train.gradient.precision)  # back to this device's settings


def compile_small(b: Bench) -> None:
    k = 20 if b.quick else 500
    for name, hidden, n in small_cases(b):
        rows = b.data(n)
        what = {"case": name, "hidden": list(hidden), "n": n, "mode": "compile"}
        b.measure("compile", what, lambda h=hidden, r=rows: b.compiled_step("fp32", h, r, "reduce-overhead", k))


def compile_large(b: Bench) -> None:
    n = 4096 if b.quick else 1 << 24
    hidden = tuple(int(h) for h in b.args.hidden.split(","))
    rows = b.data(n)
    for precision in ("tf32", "bf16"):
        what = {"n": n, "hidden": list(hidden), "precision": precision, "mode": "compile-default"}
        b.measure(
            "compile_large", what, lambda p=precision: b.compiled_step(p, hidden, rows, "default", 5 if b.quick else 20)
        )


RUNNERS: dict[str, Callable[[Bench], None]] = {
    "env": env,
    "step_time": step_time,
    "throughput": throughput,
    "rmse": rmse,
    "compile": compile_small,
    "compile_large": compile_large,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu", "auto"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs (e.g. on CPU)")
    ap.add_argument("--hidden", default=",".join(map(str, REFERENCE_NET)), help="net of the throughput grid")
    ap.add_argument("--sections", default=",".join(RUNNERS), help=f"comma-separated, of: {', '.join(RUNNERS)}")
    ap.add_argument("--out", default=str(REPO / "bench/results/gpu_train.json"))
    args = ap.parse_args()
    unknown = set(args.sections.split(",")) - set(RUNNERS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(RUNNERS)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    b = Bench(args)
    for section in args.sections.split(","):
        print(f"== {section}", flush=True)
        t0 = time.perf_counter()
        RUNNERS[section](b)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    from gpu_report import markdown  # bench/gpu_report.py: tables and the bars

    text = markdown(b.out)
    print(text)
    with atomic_file(Path(args.out).with_suffix(".md")) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} and its .md; {len(b.out['errors'])} error(s)")


if __name__ == "__main__":
    main()
