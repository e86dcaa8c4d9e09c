"""Growth: generate + normalize + one training epoch at n = 1e4 … 1e7, wall time and peak RSS.

Usage: python bench/growth.py [--sizes 10000 100000 1000000 10000000] [--batch-size 65536]
Each stage runs as its real CLI in its own process (peak RSS from wait4). The epoch is
mini-batch (`train.batch_size`), since a full-batch step over 8M rows with a 256-wide layer
needs ~8 GB of activations. Writes bench/results/growth.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, save
from ruamel.yaml import YAML


def run_stage(module: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one stage process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{module} failed: {err}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    ap.add_argument("--batch-size", type=int, default=65536)
    args = ap.parse_args()
    yaml = YAML(typ="safe")
    base = yaml.load((ROOT / "params.yaml").read_text())
    env = dict(os.environ, CIRCLEFIT_LOG="WARNING")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            p = dict(base)
            p["data"] = {**base["data"], "n": n}
            p["train"] = {
                **base["train"],
                "epochs": 1,
                "lbfgs_steps": 0,
                "batch_size": args.batch_size,
                "eval_every": 1,
            }
            yaml.dump(p, t / "params.yaml")
            par = ["--params", str(t / "params.yaml")]
            gen = run_stage(
                "stages.generate", [*par, "--tutorial", "data/tutorial36.csv", "--out", str(t / "gen")], env
            )
            nrm = run_stage("stages.normalize", [*par, "--data", str(t / "gen"), "--out", str(t / "stats.json")], env)
            trn = run_stage(
                "stages.train",
                [
                    *par,
                    "--data",
                    str(t / "gen"),
                    "--stats",
                    str(t / "stats.json"),
                    "--model",
                    str(t / "w.safetensors"),
                    "--curve",
                    str(t / "loss.tsv"),
                    "--summary",
                    str(t / "s.json"),
                    "--timing",
                    str(t / "t.json"),
                ],
                env,
            )
            row = {
                "n": n,
                "generate": {"wall_s": gen[0], "peak_rss_mib": gen[1]},
                "normalize": {"wall_s": nrm[0], "peak_rss_mib": nrm[1]},
                "train_1_epoch": {"wall_s": trn[0], "peak_rss_mib": trn[1]},
                "total_wall_s": gen[0] + nrm[0] + trn[0],
                "peak_rss_mib": max(gen[1], nrm[1], trn[1]),
            }
            rows.append(row)
            print(row, flush=True)
    print(save("growth", {"batch_size": args.batch_size, "rows": rows}))


if __name__ == "__main__":
    main()
