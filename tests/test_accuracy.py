"""Accuracy with the shipped params.yaml: the full pipeline (dvc repro), no timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circlefit.config import load_params

from conftest import copy_project, dvc, merge, repo_params

pytestmark = pytest.mark.slow


def _metrics(repo: Path) -> dict:
    return json.loads((repo / "data/eval/metrics.json").read_text())


def test_default_params_reach_test_rmse_0_3(tmp_path: Path) -> None:
    params = repo_params()
    assert params["train"]["threads"] == 2 and params["data"]["source"] == "disk"
    repo = copy_project(tmp_path / "proj")  # params.yaml verbatim
    dvc(repo, "repro")
    m = _metrics(repo)
    cfg = load_params(repo / "params.yaml").data
    assert m["test"]["held_out"] is True and m["test"]["n"] == cfg.split.counts(cfg.n)["test"]
    assert m["test"]["rmse"] <= 0.3, m["test"]
    assert m["test"]["rmse"] < m["baseline_constant_mean"]["test_rmse"] / 100


def test_tutorial_source_fits_its_36_points(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", merge(repo_params(), {"data": {"source": "tutorial"}}))
    dvc(repo, "repro")
    m = _metrics(repo)
    assert m["tutorial"]["n"] == 36 and m["test"]["held_out"] is False
    assert m["tutorial"]["rmse"] <= 0.05, m["tutorial"]
