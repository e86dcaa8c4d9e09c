"""Growth: the five stages at n = 10⁴ … 10⁷ rows, per stage wall time and peak RSS, lstsq against gradient.

    python bench/growth.py                                     # lstsq at 10⁴…10⁷, gradient at 10⁴ and 10⁵
    python bench/growth.py --sizes 10000 --gradient-sizes 10000 --stages train   # a smoke run

Each stage runs as its dvc.yaml command (`python -m stages.X …`) in its own process, with the
default params but `data.n` (and `train.method`), in a temporary directory that holds one size's
data at a time. Per process: wall time, CPU time and peak RSS (os.wait4's ru_maxrss). generate
and normalize read no train params, so they run once per n and both methods share them; train,
evaluate and export run once per method. Test RMSE comes from the evaluate stage's metrics.json,
the training facts from the train stage's summary.json.

Memory: every stage process runs under an address-space limit (--limit-gib), so a stage that
outgrows it fails with its own MemoryError instead of waking the kernel's OOM killer on a shared
machine. The gradient method's full-batch steps (Adam by default, L-BFGS always) hold the whole
train split's activations and their gradients, about 24 bytes × rows × hidden units (e.g. 49 GB
at 10⁷ rows and 256 units); a gradient size whose estimate exceeds 3/4 of the memory available now
is skipped and recorded as such.

Writes bench/results/growth.json and growth.png beside it (--out; the plot needs the `bench` extra) and
prints the Markdown table for BENCHMARKS.md. --stages runs those stages and the ones they need.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine, save
from ruamel.yaml import YAML

STAGES = ("generate", "normalize", "train", "evaluate", "export")
DATA_STAGES = ("generate", "normalize")  # no train params: once per n, shared by both methods
METHODS = ("lstsq", "gradient")
GRADIENT_BYTES_PER_ROW_UNIT = 24  # float32 pre-activation, activation and their gradients, with slack


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]  # the dvc.yaml command, `python` first
    deps: tuple[str, ...]
    outs: tuple[str, ...]


def pipeline() -> dict[str, Stage]:
    """The five stages as dvc.yaml declares them."""
    spec = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name in STAGES:
        s = spec[name]
        outs = tuple(next(iter(o)) if isinstance(o, dict) else o for o in s.get("outs", []))
        out[name] = Stage(name, shlex.split(s["cmd"]), tuple(s.get("deps", [])), outs)
    return out


def needed(stages: dict[str, Stage], wanted: list[str]) -> list[str]:
    """`wanted` and every stage whose outputs they read, in pipeline order."""
    todo, keep = list(wanted), set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        for dep in stages[name].deps:
            todo += [p.name for p in stages.values() if any(dep == o or dep.startswith(o + "/") for o in p.outs)]
    return [s for s in STAGES if s in keep]


def gradient_fits(n: int, params: dict[str, Any]) -> tuple[bool, str]:
    """Whether the gradient method's full-batch activations at n rows fit in 3/4 of the memory available now."""
    rows = round(n * params["data"]["split"]["train"])
    need = GRADIENT_BYTES_PER_ROW_UNIT * rows * sum(params["model"]["hidden"])
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    avail = next(int(ln.split()[1]) * 1024 for ln in meminfo if ln.startswith("MemAvailable:"))
    why = f"~{need / 2**30:.1f} GiB of full-batch activations against {avail / 2**30:.1f} GiB available"
    return need <= 0.75 * avail, why


def run_stage(stage: Stage, cwd: Path, limit_gib: float) -> dict[str, float]:
    """Run one stage's command in `cwd`: wall and CPU seconds, peak RSS (MiB); its output goes to cwd/NAME.log."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # `stages` and `circlefit` from this checkout

    def limit() -> None:
        cap = int(limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    t0 = time.perf_counter()
    with (cwd / f"{stage.name}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, *stage.argv[1:]], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=limit)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = (cwd / f"{stage.name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{shlex.join(stage.argv)} failed ({proc.returncode}) in {cwd}:\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def write_params(base: dict[str, Any], n: int, method: str, path: Path) -> None:
    params = json.loads(json.dumps(base))
    params["data"]["n"] = n
    params["train"]["method"] = method
    YAML(typ="safe").dump(params, path)


def measure_size(n: int, methods: list[str], order: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every method's stages at n rows in one temporary directory, removed at the end."""
    stages, base = pipeline(), YAML(typ="safe").load((ROOT / "params.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix=f"growth-{n}-", dir=args.workdir))
    try:
        (work / "data").mkdir()
        shutil.copy2(ROOT / "data/tutorial36.csv", work / "data/tutorial36.csv")
        shared: dict[str, dict[str, float]] = {}
        runs = []
        for method in methods:
            write_params(base, n, method, work / "params.yaml")
            run: dict[str, Any] = {"n": n, "method": method, "stages": {}}
            for name in order:
                if name in DATA_STAGES and name in shared:
                    run["stages"][name] = shared[name]
                    continue
                run["stages"][name] = run_stage(stages[name], work, args.limit_gib)
                if name in DATA_STAGES:
                    shared[name] = run["stages"][name]
                print(f"n {n:>10} {method:8} {name:9} {_cell(run['stages'][name])}", flush=True)
            if (work / "data/eval/metrics.json").is_file() and "evaluate" in order:
                metrics = json.loads((work / "data/eval/metrics.json").read_text())
                run["test_rmse"], run["ood_rmse"] = metrics["test"]["rmse"], metrics["ood"]["rmse"]
                run["test_max_abs_err"] = metrics["test"]["max_abs_err"]
            if "train" in order:
                run["train_summary"] = json.loads((work / "data/train/summary.json").read_text())
            runs.append(run)
        return runs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _power(n: int) -> str:
    exp = len(str(n)) - 1
    return f"10{str(exp).translate(str.maketrans('0123456789', '⁰¹²³⁴⁵⁶⁷⁸⁹'))}" if n == 10**exp else f"{n:,}"


def _cell(m: dict[str, float] | None) -> str:
    return "—" if m is None else f"{m['wall_s']:.2f} s, {m['peak_rss_mib']:.0f} MiB"


def table(runs: list[dict[str, Any]], order: list[str]) -> str:
    lines = ["| n | method | " + " | ".join(order) + " | test RMSE |", "|---" * (len(order) + 3) + "|"]
    for r in runs:
        if "skipped" in r:
            lines.append(f"| {_power(r['n'])} | {r['method']} | " + " | ".join("—" for _ in order)
                         + f" | skipped: {r['skipped']} |")  # fmt: skip
            continue
        cells = " | ".join(_cell(r["stages"].get(s)) for s in order)
        rmse = f"{r['test_rmse']:.4f}" if "test_rmse" in r else "—"
        lines.append(f"| {_power(r['n'])} | {r['method']} | {cells} | {rmse} |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], order: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = dict(zip(STAGES, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, key, label in ((axes[0], "wall_s", "wall time (s)"), (axes[1], "peak_rss_mib", "peak RSS (MiB)")):
        for method, style, mark in zip(METHODS, ("-", "--"), ("o", "s"), strict=True):
            done = [r for r in runs if r["method"] == method and "stages" in r]
            for stage in order:
                pts = [(r["n"], r["stages"][stage][key]) for r in done if stage in r["stages"]]
                if pts and not (method == "gradient" and stage in DATA_STAGES):  # shared: drawn once
                    ax.plot(*zip(*pts, strict=True), style, marker=mark, color=colors[stage],
                            label=f"{stage} ({method})" if stage not in DATA_STAGES else stage)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("data.n (rows)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    title = f"circlefit stages against n: lstsq (solid, ●) vs gradient (dashed, ■); {machine()['cpu']}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6, 10**7], help="lstsq's data.n")
    ap.add_argument("--gradient-sizes", type=int, nargs="*", default=[10**4, 10**5], help="the gradient method's")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--limit-gib", type=float, default=16.0, help="address-space limit of each stage process")
    ap.add_argument("--workdir", help="where the per-size temporary directory goes (default: the system's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "growth.json", help="the JSON; the plot goes beside it")
    args = ap.parse_args()
    order = needed(pipeline(), args.stages)
    base = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
    runs: list[dict[str, Any]] = []
    for n in sorted(set(args.sizes) | set(args.gradient_sizes)):
        methods = [m for m, sizes in zip(METHODS, (args.sizes, args.gradient_sizes), strict=True) if n in sizes]
        if "gradient" in methods and not (fits := gradient_fits(n, base))[0]:
            methods.remove("gradient")
            runs.append({"n": n, "method": "gradient", "skipped": fits[1]})
            print(f"n {n}: gradient skipped, {fits[1]}", flush=True)
        runs += measure_size(n, methods, order, args) if methods else []
    runs.sort(key=lambda r: (r["n"], METHODS.index(r["method"])))
    plot(runs, order, args.out.with_suffix(".png"))
    print(table(runs, order))
    print(save("growth", {"stages": order, "limit_gib": args.limit_gib, "runs": runs}, args.out))


if __name__ == "__main__":
    main()
