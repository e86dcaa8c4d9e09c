"""Pipeline cost: cold `dvc repro` (per-stage split), no-op `dvc repro`, and `dvc status`.

Usage: python bench/pipeline.py [--repeats 3]
Runs in a temporary git copy of the project with the default params. DVC's own floor is
`dvc status` (it loads the same pipeline and hashes the same files); the bar is a no-op
repro within 1.5x of it. Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import ROOT, run, save, summarize, venv_bin


def copy_project(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, files.split("\0")):
        if rel.startswith(("tests/", "bench/", "examples/")) or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    env = _env()
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@b.invalid", "commit", "-qm", "b"],
    ):
        run(cmd, dest, env)
    return dest


def _env() -> dict[str, str]:
    env = dict(os.environ, CIRCLEFIT_LOG="WARNING")
    env["PATH"] = f"{Path(venv_bin('python')).parent}{os.pathsep}{env['PATH']}"
    return env


def cold_repro(repo: Path) -> tuple[float, dict[str, float]]:
    """Wall time of `dvc repro -f` and of each stage, from when DVC announces it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([venv_bin("dvc"), "repro", "-f"], cwd=repo, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    marks: list[tuple[str, float]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.match(r"Running stage '([^']+)'", line)
        if m:
            marks.append((m.group(1), time.perf_counter() - t0))
    if proc.wait() != 0:
        raise RuntimeError("dvc repro -f failed")
    total = time.perf_counter() - t0
    ends = [t for _, t in marks[1:]] + [total]
    return total, {name: end - start for (name, start), end in zip(marks, ends, strict=True)}


def timed_cmd(repo: Path, *args: str) -> float:
    t0 = time.perf_counter()
    run([venv_bin("dvc"), *args], repo, _env())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_project(Path(tmp))
        colds, stages = [], []
        for _ in range(args.repeats):
            total, split = cold_repro(repo)
            colds.append(total)
            stages.append(split)
            print(f"cold repro {total:.2f} s {split}", flush=True)
        noop, status = [], []
        for _ in range(max(15, args.repeats)):  # interleaved, so drift hits both alike (~1 s each)
            noop.append(timed_cmd(repo, "repro"))
            status.append(timed_cmd(repo, "status"))
        per_stage = {name: summarize([s[name] for s in stages]) for name in stages[0]}
        result = {
            "cold_repro_s": summarize(colds),
            "per_stage_s": per_stage,
            "noop_repro_s": summarize(noop),
            "status_s": summarize(status),
            "noop_over_status": summarize(noop)["median"] / summarize(status)["median"],
        }
    print(result)
    print(save("pipeline", result))


if __name__ == "__main__":
    main()
