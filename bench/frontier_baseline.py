"""The baseline side of bench/frontier.py: lstsq trained through an earlier revision's own API (868744e's).

frontier.py starts this script with PYTHONPATH at a `git worktree` of the baseline revision, so
`circlefit` below is that revision's package, whose modules the current tree no longer has
(circlefit.lstsq, circlefit.normalize, circlefit.reference). It reads one job per line on stdin,
JSON: `rows` (an .npz of the train, val, test and ood splits), `hidden`, `out`. For each it fits
the normalizer and trains once with the revision's default `train.lstsq`, as its train stage did
(`lstsq.run`), predicts test and ood with its float64 reference model, writes the predictions to
`out` (.npz) and answers one JSON line: the wall time of the training and the chosen K.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import circlefit
from circlefit import lstsq, normalize, reference
from circlefit.config import load_params, replace

TREE = Path(circlefit.__file__).resolve().parents[1]


def job(spec: dict[str, Any], params: Any) -> dict[str, Any]:
    rows = np.load(spec["rows"])
    model = replace(params.model, hidden=tuple(spec["hidden"]))
    stats = normalize.fit_stats(rows["train"], params.normalize.min_std)
    t0 = time.perf_counter()
    run = lstsq.run(params.train.lstsq, model.hidden, model.activation, stats, rows["train"], rows["val"],
                    params.train.threads)  # fmt: skip
    wall = time.perf_counter() - t0
    np.savez(spec["out"], **{name: reference.predict(run.weights, rows[name][:, :2]) for name in ("test", "ood")})
    return {"wall_s": wall, "directions": run.summary["directions"]}


def main() -> None:
    if Path(sys.argv[1]).resolve() != TREE:  # the baseline, not whatever circlefit the venv has
        raise SystemExit(f"circlefit was imported from {TREE}, not the baseline worktree {sys.argv[1]}")
    params = load_params(TREE / "params.yaml")
    for line in sys.stdin:
        print(json.dumps(job(json.loads(line), params)), flush=True)


if __name__ == "__main__":
    main()
