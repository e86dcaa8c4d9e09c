"""End to end: real `dvc repro` in a temporary git copy of the project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SMALL, copy_project, dvc, merge, repo_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with small params after one full `dvc repro`."""
    path = copy_project(tmp_path_factory.mktemp("e2e") / "proj", merge(repo_params(), SMALL))
    dvc(path, "repro")
    return path


def test_repro_then_status_clean_and_noop(repo: Path) -> None:
    metrics = json.loads((repo / "data/eval/metrics.json").read_text())
    assert metrics["test"]["rmse"] < metrics["baseline_constant_mean"]["test_rmse"] / 10
    status = dvc(repo, "status", "--json")
    assert json.loads(status.stdout) == {}
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout, again.stdout


def test_dvc_metrics_show(repo: Path) -> None:
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert set(files) == {"data/eval/metrics.json", "data/train/summary.json"}
    for path, entry in files.items():
        assert "error" not in entry, entry
        assert entry["data"] == json.loads((repo / path).read_text()), path


def _find_key(tree: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k == key] + [x for v in tree.values() for x in _find_key(v, key)]
    if isinstance(tree, list):
        return [x for v in tree for x in _find_key(v, key)]
    return []


def test_dvc_plots_show(repo: Path, tmp_path: Path) -> None:
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert "errors" not in plots, plots.get("errors")
    data = plots["data"]
    assert set(data) == {"loss_curve", "predicted_vs_true", "error_by_radius"}
    curve_rows = len((repo / "data/train/loss.tsv").read_text().splitlines()) - 1
    expected = {
        "loss_curve": 2 * curve_rows,  # train_loss and val_loss
        "predicted_vs_true": SMALL["evaluate"]["plot_points"],
        "error_by_radius": len((repo / "data/eval/error_by_radius.csv").read_text().splitlines()) - 1,
    }
    for name, (plot,) in data.items():
        assert plot["type"] == "vega"
        assert len(plot["content"]["data"]["values"]) == expected[name], name
    # The loss spans orders of magnitude: its template (.dvc/plots/linear_logy.json) draws y on a log scale.
    y_scales = [y.get("scale") for y in _find_key(data["loss_curve"][0]["content"], "y") if isinstance(y, dict)]
    assert y_scales and all(sc == {"type": "log"} for sc in y_scales), y_scales
    out = tmp_path / "html"
    dvc(repo, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    for title in ("Loss (standardized MSE) per evaluation", "Absolute error vs radius", "Predicted vs true x"):
        assert title in html, title
