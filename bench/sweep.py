"""Parallel sweeps: 8 experiments of the default method through DVC's experiment queue, 1 worker and 2.

What a user of the default training sweeps: the width (model.hidden) and how far the hinges
reach past the data (train.lstsq.margin), each pair on two data sets (data.seed): 2 × 2 × 2.
Every experiment has its own data seed, so no two share a stage: two workers saving the same
DVC run-cache entry at once can fail an experiment (see tests/test_experiments.py), so each
experiment is queued with its own `dvc exp run --queue -S …`. Each mode runs in its own fresh
`git clone` of this repository's HEAD (so nothing comes from a run cache another mode filled, and
queued runs see only what git and DVC track). A third clone runs the same stages directly
(`python -m stages.X`, the commands of dvc.yaml, no DVC) for the same 8 configs: the serial
sweep's wall time minus that, per experiment, is DVC's overhead.

    python bench/sweep.py            # venv active, from the repository root
    python bench/sweep.py --quick    # the first 2 experiments: a smoke run

Writes bench/results/sweep.json (--out) and prints the Markdown table BENCHMARKS.md shows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import save
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 2 widths × 2 margins × 2 data sets = 8 experiments of the default method (train.method lstsq),
# data.seed 0…7, one each; every other param is FIXED (small: a run takes seconds).
WIDTHS, MARGINS, DATA_SETS = ([128], [256]), (0.05, 0.1), 2
KEYS = ("model.hidden", "train.lstsq.margin", "data.seed")
FIXED: dict[str, Any] = {
    "data.n": 2048,
    "data.ood.n": 256,
    "train.threads": 1,  # one core per job: -j 2 fills a 2-core machine without oversubscribing it
    "evaluate.plot_points": 200,
    "export.probes": 16,
    "export.parity_random": 256,
    "export.parity_large_batch": 4096,
}


def _env() -> dict[str, str]:
    env = dict(os.environ, CIRCLEFIT_LOG="WARNING")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # DVC runs `python -m stages.X`: this venv's
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _value(v: Any) -> str:
    """A value as `dvc exp run -S` takes it: lists as [a,b], strings bare."""
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return v if isinstance(v, str) else json.dumps(v)


def _set_args(values: dict[str, Any]) -> list[str]:
    """-S key=value for each value."""
    return [a for k, v in values.items() for a in ("-S", f"{k}={_value(v)}")]


def configs() -> list[dict[str, Any]]:
    """The 8 experiments: every width × margin on two data sets, each experiment its own data.seed."""
    cells = itertools.product(WIDTHS, MARGINS, range(DATA_SETS))
    return [dict(zip(KEYS, (w, m, seed), strict=True)) for seed, (w, m, _) in enumerate(cells)]


def _clone(dest: Path) -> Path:
    _run(["git", "clone", "-q", str(REPO), str(dest)], REPO)
    return dest


def _queue(repo: Path) -> tuple[int, bool, bool] | None:
    """(tasks finished, any Queued or Running, any live worker) from `dvc queue status`; None if it hung.

    Poll the queue, never `dvc exp show`: collecting experiments while a worker finishes one can hang.
    """
    try:
        out = subprocess.run([str(BIN / "dvc"), "queue", "status"], cwd=repo, env=_env(), capture_output=True,
                             text=True, timeout=60).stdout  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    tasks, _, workers = out.partition("Worker status:")
    done = len(re.findall(r"\b(Success|Failed)\b", tasks))
    return done, bool(re.search(r"\b(Queued|Running)\b", tasks)), "0 active, 0 idle" not in workers


def _experiments(repo: Path) -> list[dict[str, Any]]:
    out = []
    for baseline in json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo)):
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            data = rev.get("data") or {}
            metrics = (data.get("metrics") or {}).get("data/eval/metrics.json", {}).get("data", {})
            params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
            state = (exp.get("executor") or {}).get("state") or ("success" if metrics else "failed")
            out.append({
                "name": exp.get("name") or rev.get("name"),
                "state": state,
                "params": {k: _get(params, k) for k in KEYS},
                "test_rmse": (metrics.get("test") or {}).get("rmse"),
            })  # fmt: skip
    return out


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree.get(key, {})
    return tree


def _start(repo: Path, jobs: int) -> None:
    # The workers outlive `queue start` and inherit its stdio: give them none, or the call would wait.
    subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", str(jobs)], cwd=repo, env=_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip


def sweep(dest: Path, jobs: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Queue the experiments in a fresh clone, run them with `dvc queue start -j jobs`, time it."""
    repo = _clone(dest)
    count = len(runs)
    t = time.monotonic()
    for config in runs:
        queued = _run([str(BIN / "dvc"), "exp", "run", "--queue", *_set_args(config), *_set_args(FIXED)], repo)
        if queued.count("Queued experiment") != 1:
            raise SystemExit(f"expected 1 queued experiment:\n{queued}")
    queue_s = time.monotonic() - t
    t = time.monotonic()
    _start(repo, jobs)
    finished: list[float] = []  # seconds after `queue start` at which each experiment was seen done
    restarts, stalled_since = 0, None
    while True:
        state = _queue(repo)
        if state is not None:
            done, busy, workers = state
            finished += [round(time.monotonic() - t, 1)] * (done - len(finished))
            if not busy and done == count:
                break
            # DVC's idle monitor can stop a worker with tasks still queued (treeverse/dvc#10562);
            # its workaround is another `dvc queue start`. Counted, and reported.
            stalled_since = None if workers else (stalled_since or time.monotonic())
            if stalled_since and time.monotonic() - stalled_since > 20:
                _start(repo, jobs)
                restarts, stalled_since = restarts + 1, None
        if time.monotonic() - t > 3600:
            raise SystemExit(f"-j {jobs}: the queue did not finish in an hour")
        time.sleep(0.5)
    wall = time.monotonic() - t
    while (state := _queue(repo)) is None or state[2]:  # idle workers exit after DVC's 10 s idle timeout
        time.sleep(1)
    workers_exit = time.monotonic() - t
    exps = _experiments(repo)
    bad = [x for x in exps if x["state"] != "success"]
    if len(exps) != count or bad:
        raise SystemExit(f"-j {jobs}: {len(exps)} experiments, not all successful: {bad or exps}")
    return {
        "jobs": jobs,
        "queue_s": round(queue_s, 2),  # every `dvc exp run --queue`
        "wall_s": round(wall, 2),  # `dvc queue start` until every experiment is done
        "finished_s": finished,
        "workers_exit_s": round(workers_exit, 2),
        "worker_restarts": restarts,
        "loadavg_1m_after": os.getloadavg()[0],
        "experiments": exps,
    }


def direct(dest: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The same stages without DVC, every stage for every config (each its own data)."""
    repo = _clone(dest)
    yaml = YAML()
    stages = yaml.load((repo / "dvc.yaml").read_text())["stages"]
    base = yaml.load((repo / "params.yaml").read_text())
    t = time.monotonic()
    for config in runs:
        params = json.loads(json.dumps(base))
        for key, value in {**FIXED, **config}.items():
            *parents, leaf = key.split(".")
            node = params
            for p in parents:
                node = node[p]
            node[leaf] = value
        with (repo / "params.yaml").open("w") as f:
            yaml.dump(params, f)
        for stage in stages.values():
            _run(shlex.split(" ".join(stage["cmd"].split())), repo)
    return {"wall_s": round(time.monotonic() - t, 2), "runs": len(runs), "loadavg_1m_after": os.getloadavg()[0]}


def table(result: dict[str, Any]) -> str:
    n = len(result["configs"])
    rows = ["| mode | wall (s) | per experiment (s) | queueing (s) |", "|---|---|---|---|"]
    for s in result["sweeps"]:
        rows.append(
            f"| `dvc queue start -j {s['jobs']}` | {s['wall_s']:.1f} | {s['wall_s'] / n:.1f} | {s['queue_s']:.1f} |"
        )
    d = result["direct"]
    rows.append(f"| stages run directly, no DVC (serial) | {d['wall_s']:.1f} | {d['wall_s'] / n:.1f} | — |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--quick", action="store_true", help="only the first 2 experiments (a smoke run)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/sweep.json")
    args = ap.parse_args()
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO).strip():
        print("note: uncommitted changes are not benchmarked (each mode runs a clone of HEAD)", file=sys.stderr)
    runs = configs()[:2] if args.quick else configs()
    result: dict[str, Any] = {"loadavg_1m_before": os.getloadavg()[0], "configs": runs, "fixed": FIXED, "sweeps": []}
    with tempfile.TemporaryDirectory(prefix="circlefit-sweep.") as tmp:
        result["direct"] = direct(Path(tmp) / "direct", runs)
        print(f"direct: {result['direct']['wall_s']:.1f} s", file=sys.stderr)
        for jobs in (int(j) for j in args.jobs.split(",")):
            result["sweeps"].append(sweep(Path(tmp) / f"j{jobs}", jobs, runs))
            print(f"-j {jobs}: {result['sweeps'][-1]['wall_s']:.1f} s", file=sys.stderr)
    walls = {s["jobs"]: s["wall_s"] for s in result["sweeps"]}
    if 1 in walls:
        per = (walls[1] - result["direct"]["wall_s"]) / len(runs)
        result["dvc_overhead_per_experiment_s"] = round(per, 2)
        result["speedup_vs_j1"] = {j: round(walls[1] / w, 3) for j, w in walls.items()}
    result["loadavg_1m_after"] = os.getloadavg()[0]
    print(table(result))
    print(save("sweep", result, args.out))
    for key in ("speedup_vs_j1", "dvc_overhead_per_experiment_s"):
        print(f"{key}: {result.get(key)}")


if __name__ == "__main__":
    main()
