"""End to end: real `dvc repro` in a temporary git copy of the project."""

from __future__ import annotations

import json

import pytest

from conftest import dvc

pytestmark = pytest.mark.slow


def test_repro_then_status_clean_and_noop(project):
    repo = project()
    dvc(repo, "repro")
    metrics = json.loads((repo / "data/eval/metrics.json").read_text())
    assert metrics["test"]["rmse"] < metrics["baseline_constant_mean"]["test_rmse"] / 10
    status = dvc(repo, "status", "--json")
    assert json.loads(status.stdout) == {}
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout, again.stdout
