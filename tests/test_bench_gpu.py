"""The GPU benchmarks run end to end on the CPU (small sizes), so they do not rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, env

pytestmark = pytest.mark.slow


def test_gpu_benchmark_runs_on_cpu_quick(tmp_path):
    out = tmp_path / "gpu_train.json"
    sections = "env,step_time,throughput,rmse"
    cmd = [sys.executable, str(REPO / "bench/gpu_train.py"), "--device", "cpu", "--quick", "--sections", sections]
    proc = subprocess.run([*cmd, "--out", str(out)], env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    assert {r["mode"] for r in result["step_time"]} == {"eager", "static"}
    assert all(r["ms_per_step"] > 0 for r in result["step_time"] + result["throughput"])
    assert {r["precision"] for r in result["throughput"]} == {"fp32", "tf32", "bf16"}
    assert [r["ran"] for r in result["rmse"]] == ["eager", "static"]
    markdown = out.with_suffix(".md").read_text()
    assert "| reference | [64, 64] | 4096 |" in markdown and "Bars:" in markdown


def test_gpu_lstsq_benchmark_runs_on_cpu(tmp_path):
    """bench/gpu_lstsq.py at a small n; without a GPU its device side is the torch path on the CPU, bitwise numpy's."""
    out = tmp_path / "gpu_lstsq.json"
    cmd = [sys.executable, str(REPO / "bench/gpu_lstsq.py"), "--sizes", "20000", "--threads", "2", "--out", str(out)]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["sizes"]
    assert row["n"] == 20000 and row["bitwise_equal"] and row["curves_equal"]
    assert row["cpu"]["threads"] == 2 and row["cpu"]["wall_s"] > 0 and row["device"]["wall_s"] > 0
    assert "| 20,000 |" in proc.stdout
