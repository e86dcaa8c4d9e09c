"""Pipeline cost: cold `dvc repro -f` against DVC's own floor, and a no-op `dvc repro` against `dvc status`.

    python bench/pipeline.py                              # 5 cold rounds, 15 no-op rounds
    python bench/pipeline.py --rounds 1 --noop-rounds 2   # a smoke run

Cold: DVC's floor is a pipeline of six stages chained by deps and outs, each `python -c "import
numpy"` (writing the one-line file the next one depends on), in a fresh git + DVC repository;
circlefit is a temporary git copy of this checkout's tracked files as they are in the work tree
(tests/, bench/ and examples/ left out), default params. Each round runs `dvc repro -f` once in
each, in alternating order, so load on the machine hits both alike. Per pipeline: wall time and
CPU time (user + sys of dvc and every stage process: less sensitive than wall time to other work
on the machine), medians (min–max), the ratio of medians to the floor and the median of the
per-round ratios, and each stage's wall time from DVC's "Running stage" lines.

No-op: then, in the circlefit copy, `dvc repro` with nothing to do and `dvc status` alternate;
`dvc status` loads the same pipeline and hashes the same files, so their ratio is what a no-op
repro adds to DVC's own check. Writes bench/results/pipeline.json; prints the Markdown tables.
Needs git, and dvc in the Python that runs this (the stages run `python` from its bin/).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, run, save, summarize, venv_bin

FLOOR_STAGES = 6
PIPELINES = ("floor", "circlefit")


def _env() -> dict[str, str]:
    env = dict(os.environ, CIRCLEFIT_LOG="WARNING", DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(venv_bin('python')).parent}{os.pathsep}{env['PATH']}"  # the stages' `python`
    env.pop("PYTHONPATH", None)  # `python -m stages.X` runs in the copy: its circlefit comes first
    return env


def _commit(repo: Path) -> None:
    run(["git", "add", "-A"], repo, _env())
    run(["git", "-c", "user.name=b", "-c", "user.email=b@b.invalid", "commit", "-qm", "b"], repo, _env())


def make_floor(dest: Path) -> Path:
    """Six chained `python -c "import numpy"` stages in a fresh git + DVC repository."""
    dest.mkdir(parents=True)
    lines = ["stages:"]
    for i in range(1, FLOOR_STAGES + 1):
        prev = f"open('s{i - 1}.txt').read()" if i > 1 else "'0'"
        lines += [
            f"  s{i}:",
            f"    cmd: python -c \"import numpy; open('s{i}.txt', 'w').write({prev} + '{i}')\"",
            *([f"    deps: [s{i - 1}.txt]"] if i > 1 else []),
            f"    outs: [s{i}.txt]",
        ]
    (dest / "dvc.yaml").write_text("\n".join(lines) + "\n")
    run(["git", "init", "-q"], dest, _env())
    run([venv_bin("dvc"), "init", "-q"], dest, _env())
    run([venv_bin("dvc"), "config", "core.analytics", "false"], dest, _env())
    _commit(dest)
    return dest


def copy_project(dest: Path) -> Path:
    """This checkout's git-tracked files as they are in its work tree, committed in a fresh repository."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, files.split("\0")):
        if rel.startswith(("tests/", "bench/", "examples/")) or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    run(["git", "init", "-q"], dest, _env())
    _commit(dest)
    return dest


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # every descendant reaped so far: dvc and its stages
    return usage.ru_utime + usage.ru_stime


def cold_repro(repo: Path) -> dict[str, Any]:
    """Wall and CPU seconds of `dvc repro -f`, and each stage's wall time from DVC's announcement to the next."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen([venv_bin("dvc"), "repro", "-f"], cwd=repo, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    marks: list[tuple[str, float]] = []
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if m := re.match(r"Running stage '([^']+)'", line):
            marks.append((m.group(1), time.perf_counter() - t0))
    if proc.wait() != 0:
        raise RuntimeError(f"dvc repro -f failed in {repo}:\n{''.join(out)}")
    total = time.perf_counter() - t0
    ends = [t for _, t in marks[1:]] + [total]
    stages = {name: end - start for (name, start), end in zip(marks, ends, strict=True)}
    return {"wall_s": total, "cpu_s": _children_cpu() - cpu0, "stages_s": stages}


def timed_dvc(repo: Path, *args: str) -> float:
    t0 = time.perf_counter()
    run([venv_bin("dvc"), *args], repo, _env())
    return time.perf_counter() - t0


def cold(repos: dict[str, Path], rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in repos}
    for r in range(rounds):
        for name in PIPELINES[r % 2 :] + PIPELINES[: r % 2]:  # alternate which goes first
            samples[name].append(cold_repro(repos[name]))
        print(f"round {r + 1}: " + ", ".join(f"{n} {samples[n][-1]['wall_s']:.2f} s" for n in PIPELINES), flush=True)
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        walls, cpus = [s["wall_s"] for s in runs], [s["cpu_s"] for s in runs]
        floor = samples["floor"]
        out[name] = {
            "wall_s": summarize(walls),
            "cpu_s": summarize(cpus),
            "over_floor": statistics.median(walls) / statistics.median(s["wall_s"] for s in floor),
            "cpu_over_floor": statistics.median(cpus) / statistics.median(s["cpu_s"] for s in floor),
            "round_ratios": summarize([s["wall_s"] / f["wall_s"] for s, f in zip(runs, floor, strict=True)]),
            "stages_s": {stage: summarize([s["stages_s"][stage] for s in runs]) for stage in runs[0]["stages_s"]},
            "samples": runs,
        }
    return out


def noop(repo: Path, rounds: int) -> dict[str, Any]:
    """`dvc repro` with nothing to do and `dvc status`, alternating (~1 s each)."""
    repro, status = [], []
    for _ in range(rounds):
        repro.append(timed_dvc(repo, "repro"))
        status.append(timed_dvc(repo, "status"))
    return {"noop_repro_s": summarize(repro), "status_s": summarize(status),
            "noop_over_status": statistics.median(repro) / statistics.median(status)}  # fmt: skip


def _range(s: dict[str, float]) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def tables(result: dict[str, Any]) -> str:
    c = result["cold"]
    lines = [
        "| pipeline | cold `dvc repro -f`, wall s, median (min–max) | ÷ floor | per-round ratio | CPU s (user + sys) "
        "| CPU ÷ floor |",
        "|---|---|---|---|---|---|",
    ]
    names = {"floor": f'DVC\'s floor: {FLOOR_STAGES} × `python -c "import numpy"`', "circlefit": "circlefit"}
    for name in PIPELINES:
        p = c[name]
        lines.append(f"| {names[name]} | {_range(p['wall_s'])} | {p['over_floor']:.2f} | {_range(p['round_ratios'])} "
                     f"| {_range(p['cpu_s'])} | {p['cpu_over_floor']:.2f} |")  # fmt: skip
    lines += ["", "| circlefit stage | wall s, median (min–max) |", "|---|---|"]
    lines += [f"| {stage} | {_range(s)} |" for stage, s in c["circlefit"]["stages_s"].items()]
    n = result["noop"]
    lines += ["", "| no-op `dvc repro`, s | `dvc status`, s | ratio |", "|---|---|---|",
              f"| {_range(n['noop_repro_s'])} | {_range(n['status_s'])} | {n['noop_over_status']:.2f} |"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="cold `dvc repro -f` rounds (floor and circlefit each)")
    ap.add_argument("--noop-rounds", type=int, default=15, help="no-op `dvc repro` and `dvc status` pairs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        repos = {"floor": make_floor(Path(tmp) / "floor"), "circlefit": copy_project(Path(tmp) / "circlefit")}
        result = {"rounds": args.rounds, "cold": cold(repos, args.rounds), "noop": noop(repos["circlefit"],
                  args.noop_rounds), "loadavg_start": load_start}  # fmt: skip
    result["loadavg_end"] = os.getloadavg()
    print(tables(result))
    print(save("pipeline", result, args.out))


if __name__ == "__main__":
    main()
