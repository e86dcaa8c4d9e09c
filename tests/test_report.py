"""The review report's builders, fed with the JSON shapes `dvc … diff --json` emits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from circlefit.report import (
    Diffs,
    metrics_section,
    params_section,
    plot_changes,
    plots_section,
    relative_change,
    render,
)

from conftest import env, run

PARAMS = {
    "params.yaml": {
        "train.lr": {"old": 0.01, "new": 0.003, "diff": -0.007},
        "model.hidden": {"old": "[64]", "new": "[64, 64]"},
        "export.probes": {"old": 16, "new": 32, "diff": 16},
    }
}
PARAMS_DEPS = {"params.yaml": {k: v for k, v in PARAMS["params.yaml"].items() if k != "export.probes"}}
METRICS = {
    "data/eval/metrics.json": {
        "test.rmse": {"old": 0.5, "new": 0.4, "diff": -0.1},
        "ood.mae": {"old": 0.0, "new": 1.5, "diff": 1.5},
    },
    "data/train/summary.json": {"best_val_loss": {"old": 2e-6, "new": 3e-6, "diff": 1e-6}},
}


def _vega(revs: list[str], rows: dict[str, list[dict[str, str]]]) -> list[dict[str, object]]:
    values = [dict(r, rev=rev) for rev in revs for r in rows.get(rev, [])]
    return [{"type": "vega", "revisions": revs, "content": {"data": {"values": values}, "mark": "point"}}]


PLOTS = {
    "data": {
        "same": _vega(["main", "HEAD"], {"main": [{"x": "1", "y": "2"}], "HEAD": [{"x": "1", "y": "2"}]}),
        "moved": _vega(["main", "HEAD"], {"main": [{"x": "1", "y": "2"}], "HEAD": [{"x": "1", "y": "3"}]}),
        "new": _vega(["main", "HEAD"], {"HEAD": [{"x": "1", "y": "3"}, {"x": "2", "y": "4"}]}),
    }
}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (10, 12, 0.2),
        (-2, -1, 0.5),
        (0.5, 0.4, -0.2),
        (0, 1, None),
        (None, 1, None),
        (True, False, None),
        ("a", "b", None),
        (1.0, float("nan"), None),
    ],
)
def test_relative_change(old, new, expected):
    got = relative_change(old, new)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_params_flags_only_the_params_no_stage_reads():
    text = params_section(PARAMS, PARAMS_DEPS)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {"`train.lr`", "`model.hidden`", "`export.probes`"}
    assert "no stage reads it" in rows["`export.probes`"]
    assert "no stage reads it" not in rows["`train.lr`"] + rows["`model.hidden`"]
    assert "| 0.01 | 0.003 |" in rows["`train.lr`"]
    assert "1 changed param(s) are not dependencies of any stage" in text


def test_empty_diffs_say_so():
    assert params_section({}, {}).endswith("No params changed.")
    assert metrics_section({}).endswith("No metrics changed.")


def test_metrics_show_relative_change_and_headline_first():
    text = metrics_section(METRICS, headline=("test.rmse",))
    head, _, details = text.partition("<details>")
    assert "| `data/eval/metrics.json` | `test.rmse` | 0.5 | 0.4 | -0.1 | -20 % |" in head
    assert "best_val_loss" not in head
    assert "All 3 changed metrics" in details
    assert "| `data/train/summary.json` | `best_val_loss` | 2e-06 | 3e-06 | 1e-06 | +50 % |" in details
    assert "| `data/eval/metrics.json` | `ood.mae` | 0 | 1.5 | 1.5 | — |" in details  # old 0: no relative change


def test_plot_changes_compare_each_revisions_rows():
    got = {c.name: c for c in plot_changes(PLOTS)}
    assert got["same"].changed is False
    assert got["moved"].changed is True
    assert got["new"].changed is None and got["new"].rows == {"main": 0, "HEAD": 2}
    text = plots_section(list(got.values()), "report_plots/index.html")
    assert "[report_plots/index.html](report_plots/index.html)" in text
    assert "| `new` | missing in `main` | main: 0, HEAD: 2 |" in text
    assert "| `same` | unchanged |" in text and "| `moved` | changed |" in text


def test_render_has_every_section():
    text = render(Diffs("main", "HEAD", PARAMS, PARAMS_DEPS, METRICS, PLOTS, "p/index.html"))
    assert text.startswith("## circlefit: `main` → `HEAD`\n")
    for heading in ("### Params", "### Metrics", "### Plots"):
        assert heading in text


def test_table_cells_escape_pipes():
    text = params_section({"params.yaml": {"data.source": {"old": "a|b", "new": "c"}}}, {})
    assert "| `data.source` | `a\\|b` | `c` |" in text


def test_report_module_does_not_import_torch():
    code = "import sys, circlefit.report; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env())
    assert out.stdout.strip() == "[]"


def test_cli_names_a_bad_revision(project):
    repo = project()
    proc = run([sys.executable, "-m", "circlefit", "report", "no-such-rev", "-o", "r.md"], repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"circlefit report: error: `dvc params diff no-such-rev --json` failed in {repo}: "
        "ERROR: unknown Git revision 'no-such-rev'"
    ]
    assert not (repo / "r.md").exists()
