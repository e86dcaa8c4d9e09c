"""What the stages' process policies cost or save: garbage collection and the kernel pins, stage by stage.

    python bench/edge_policies.py                              # train, evaluate, export; 7 rounds
    python bench/edge_policies.py --stages export --rounds 2   # a smoke run

stages/edge.py sets two policies before a stage does any work:
- garbage collection: the collector is off while the imports run, what they made is frozen, and it
  goes back on (stays off in the export stage). Variant `gc_default`: the same stage command with
  Python's default, through a `python -c` prelude that imports `stages`, turns the collector back
  on and makes `gc.freeze` a no-op before the stage module runs as `__main__`;
- the kernel pins (MKL, ATen and oneDNN held to the branches Intel and AMD share). Variant
  `unpinned`: the stage command with CIRCLEFIT_PIN_KERNELS=0.

Each stage runs as its dvc.yaml command on this checkout's default data (run `dvc repro` first),
writing its outputs into a temporary directory. The three variants take turns round by round, in a
rotated order. Per stage and variant: wall and CPU time (user + sys of the process), medians
(min–max), and the ratio of the shipped policy's median to each variant's. Writes
bench/results/edge_policies.json (--out) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, save, summarize
from ruamel.yaml import YAML

STAGES = ("train", "evaluate", "export")
VARIANTS = ("shipped", "gc_default", "unpinned")
PRELUDE = (
    "import gc, runpy, sys, stages; gc.enable(); gc.freeze = lambda: None; "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def commands(tmp: Path) -> dict[str, list[str]]:
    """Each stage's dvc.yaml command with its outputs moved under `tmp`; its inputs stay the checkout's."""
    spec = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    out: dict[str, list[str]] = {}
    for name in STAGES:
        argv = shlex.split(spec[name]["cmd"])
        outs = {next(iter(o)) if isinstance(o, dict) else o for o in spec[name].get("outs", [])}
        out[name] = [str(tmp / name / a) if a in outs else a for a in argv]
    return out


def run_once(argv: list[str], variant: str) -> tuple[float, float]:
    """Wall and CPU seconds of one stage process."""
    env = {**os.environ, "CIRCLEFIT_LOG": "WARNING"}
    env.pop("CIRCLEFIT_PIN_KERNELS", None)
    cmd = [sys.executable, *argv[1:]]  # python -m stages.NAME …
    if variant == "gc_default":
        cmd = [sys.executable, "-c", PRELUDE, argv[2], *argv[3:]]
    elif variant == "unpinned":
        env["CIRCLEFIT_PIN_KERNELS"] = "0"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "edge_policies.json")
    args = ap.parse_args()
    needed = ("data/generated", "data/stats.json", "data/model/weights.safetensors", "data/eval/metrics.json")
    missing = [p for p in needed if not (ROOT / p).exists()]
    if missing:
        sys.exit(f"edge_policies: run `dvc repro` first (missing: {', '.join(missing)})")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="circlefit-edge-") as tmp:
        cmds = commands(Path(tmp))
        for name in args.stages:
            for arg in cmds[name]:
                if arg.startswith(tmp):
                    Path(arg).parent.mkdir(parents=True, exist_ok=True)
            samples: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in VARIANTS}
            for r in range(args.rounds):
                for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                    wall, cpu = run_once(cmds[name], variant)
                    samples[variant]["wall"].append(wall)
                    samples[variant]["cpu"].append(cpu)
            row: dict[str, Any] = {v: {m: summarize(s) for m, s in samples[v].items()} for v in VARIANTS}
            for v in VARIANTS[1:]:
                row[f"shipped_over_{v}"] = {
                    m: row["shipped"][m]["median"] / row[v][m]["median"] for m in ("wall", "cpu")
                }
            results[name] = row
            print(
                f"{name}: shipped/gc_default wall {row['shipped_over_gc_default']['wall']:.3f}, "
                f"shipped/unpinned wall {row['shipped_over_unpinned']['wall']:.3f}",
                flush=True,
            )
    save("edge_policies", {"rounds": args.rounds, "stages": results}, args.out)

    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"

    print(
        "\n| stage | shipped (s) | Python's default GC (s) | pins off (s) | shipped ÷ default GC, wall / CPU "
        "| shipped ÷ pins off, wall / CPU |\n|---|---|---|---|---|---|"
    )
    for name, row in results.items():
        g, u = row["shipped_over_gc_default"], row["shipped_over_unpinned"]
        print(
            f"| {name} | {cell(row['shipped']['wall'])} | {cell(row['gc_default']['wall'])} "
            f"| {cell(row['unpinned']['wall'])} "
            f"| {g['wall']:.2f} / {g['cpu']:.2f} | {u['wall']:.2f} / {u['cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
