"""Shared helpers for benchmarks: machine facts, repeat-and-summarize, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    """CPU model, cores and library versions, recorded beside every result."""
    cpu, ids = "unknown", {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and cpu == "unknown":
                cpu = value
            elif key in ("cpu family", "model") and key not in ids:
                ids[key] = value  # the generation where the name does not say it ("AMD EPYC" on some VMs)
            if not key:
                break  # the first CPU's block ends at a blank line
    except OSError:
        pass
    if ids:
        cpu += f" (family {ids.get('cpu family', '?')}, model {ids.get('model', '?')})"
    versions = {}
    for mod in ("torch", "numpy", "onnx", "onnxruntime", "dvc"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def summarize(samples: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def save(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """Write bench/results/NAME.json (or `path`) with the command and the machine beside the payload."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
