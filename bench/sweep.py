"""Parallel sweeps: one 8-run grid through DVC's experiment queue with 1 worker and with 2.

Each mode runs in its own fresh `git clone` of this repository's HEAD (so nothing comes from a
run cache another mode filled, and queued runs see only what git and DVC track). A third clone
runs the same stages directly (`python -m stages.X`, the commands of dvc.yaml, no DVC) for the
same 8 configs: the serial sweep's wall time minus that, per experiment, is DVC's overhead.

    python bench/sweep.py            # venv active, from the repository root; ~10 min on 2 cores

Writes bench/results/sweep.json and prints the Markdown table BENCHMARKS.md shows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 2 × 2 × 2 = 8 configurations; every other param is FIXED (small: a run takes seconds).
GRID: dict[str, list[Any]] = {
    "model.hidden": [[16], [32]],
    "train.lr": [0.003, 0.01],
    "train.schedule": ["onecycle", "cosine"],
}
FIXED: dict[str, Any] = {
    "train.method": "gradient",  # the grid sweeps the gradient method's lr and schedule (lstsq has neither)
    "data.n": 2048,
    "data.ood.n": 256,
    "train.epochs": 200,
    "train.lbfgs_steps": 50,
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
    """-S key=value for each value; a list of choices becomes DVC's comma-separated grid."""
    return [a for k, v in values.items() for a in ("-S", f"{k}={v if isinstance(v, str) else _value(v)}")]


def _configs() -> list[dict[str, Any]]:
    return [dict(zip(GRID, combo, strict=True)) for combo in itertools.product(*GRID.values())]


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
                "params": {k: _get(params, k) for k in GRID},
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


def sweep(dest: Path, jobs: int) -> dict[str, Any]:
    """Queue the grid in a fresh clone, run it with `dvc queue start -j jobs`, time it."""
    repo = _clone(dest)
    grid = _set_args({k: ",".join(_value(v) for v in vs) for k, vs in GRID.items()})
    t = time.monotonic()
    queued = _run([str(BIN / "dvc"), "exp", "run", "--queue", *grid, *_set_args(FIXED)], repo)
    queue_s = time.monotonic() - t
    if queued.count("Queued experiment") != len(_configs()):
        raise SystemExit(f"expected {len(_configs())} queued experiments:\n{queued}")
    t = time.monotonic()
    _start(repo, jobs)
    finished: list[float] = []  # seconds after `queue start` at which each experiment was seen done
    restarts, stalled_since = 0, None
    while True:
        state = _queue(repo)
        if state is not None:
            done, busy, workers = state
            finished += [round(time.monotonic() - t, 1)] * (done - len(finished))
            if not busy and done == len(_configs()):
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
    if len(exps) != len(_configs()) or bad:
        raise SystemExit(f"-j {jobs}: {len(exps)} experiments, not all successful: {bad or exps}")
    return {
        "jobs": jobs,
        "queue_s": round(queue_s, 2),  # `dvc exp run --queue` for the whole grid
        "wall_s": round(wall, 2),  # `dvc queue start` until every experiment is done
        "finished_s": finished,
        "workers_exit_s": round(workers_exit, 2),
        "worker_restarts": restarts,
        "loadavg_1m_after": os.getloadavg()[0],
        "experiments": exps,
    }


def direct(dest: Path) -> dict[str, Any]:
    """The same stages without DVC: generate + normalize once (one data config), the rest per config."""
    repo = _clone(dest)
    yaml = YAML()
    stages = yaml.load((repo / "dvc.yaml").read_text())["stages"]
    base = yaml.load((repo / "params.yaml").read_text())
    t = time.monotonic()
    for i, config in enumerate(_configs()):
        params = json.loads(json.dumps(base))
        for key, value in {**FIXED, **config}.items():
            *parents, leaf = key.split(".")
            node = params
            for p in parents:
                node = node[p]
            node[leaf] = value
        with (repo / "params.yaml").open("w") as f:
            yaml.dump(params, f)
        for name, stage in stages.items():
            if i == 0 or name not in ("generate", "normalize"):
                _run(shlex.split(" ".join(stage["cmd"].split())), repo)
    return {"wall_s": round(time.monotonic() - t, 2), "runs": len(_configs()), "loadavg_1m_after": os.getloadavg()[0]}


def machine() -> dict[str, Any]:
    import dvc
    import torch

    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dvc": dvc.__version__,
    }


def table(result: dict[str, Any]) -> str:
    n = len(_configs())
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
    ap.add_argument("--out", default=str(REPO / "bench/results/sweep.json"))
    args = ap.parse_args()
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO).strip():
        print("note: uncommitted changes are not benchmarked (each mode runs a clone of HEAD)", file=sys.stderr)
    result: dict[str, Any] = {"machine_before": machine(), "grid": GRID, "fixed": FIXED, "sweeps": []}
    with tempfile.TemporaryDirectory(prefix="circlefit-sweep.") as tmp:
        result["direct"] = direct(Path(tmp) / "direct")
        print(f"direct: {result['direct']['wall_s']:.1f} s", file=sys.stderr)
        for jobs in (int(j) for j in args.jobs.split(",")):
            result["sweeps"].append(sweep(Path(tmp) / f"j{jobs}", jobs))
            print(f"-j {jobs}: {result['sweeps'][-1]['wall_s']:.1f} s", file=sys.stderr)
    walls = {s["jobs"]: s["wall_s"] for s in result["sweeps"]}
    if 1 in walls:
        result["dvc_overhead_per_experiment_s"] = round((walls[1] - result["direct"]["wall_s"]) / len(_configs()), 2)
        result["speedup_vs_j1"] = {j: round(walls[1] / w, 3) for j, w in walls.items()}
    result["machine_after"] = machine()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(table(result))
    for key in ("speedup_vs_j1", "dvc_overhead_per_experiment_s"):
        print(f"{key}: {result.get(key)}")


if __name__ == "__main__":
    main()
