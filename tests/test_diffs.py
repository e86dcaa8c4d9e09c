"""Review diffs between commits: params, metrics and plots show what changed and nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from circlefit.report import plot_changes

from conftest import HISTORY_CHANGE, SMALL, dump_yaml, dvc, env, git, merge, repo_params, run

pytestmark = pytest.mark.slow

PLOTS = {"loss_curve", "predicted_vs_true", "error_by_radius"}
# Metrics a learning-rate change cannot move: seeing them in the diff would be churn.
LR_INVARIANT = {
    "data/eval/metrics.json": {"baseline_constant_mean.test_rmse", "test.n", "ood.n", "tutorial.n", "test.held_out"},
    "data/train/summary.json": {"steps", "train_rows", "parameters", "threads", "device", "precision", "torch"},
}


def _json(repo: Path, *args: str) -> dict:
    return json.loads(dvc(repo, *args, "--json").stdout or "{}")


def test_params_diff_is_exactly_the_change(history):
    old = merge(repo_params(), SMALL)["train"]["lstsq"]["margin"]
    new = HISTORY_CHANGE["train"]["lstsq"]["margin"]
    expected = {"params.yaml": {"train.lstsq.margin": {"old": old, "new": new, "diff": pytest.approx(new - old)}}}
    assert _json(history, "params", "diff", "HEAD~1", "HEAD") == expected
    assert _json(history, "params", "diff", "HEAD~1", "HEAD", "--deps") == expected  # a stage reads it


def test_every_param_is_read_by_some_stage(history):
    everything = _json(history, "params", "diff", "HEAD", "--all")["params.yaml"]
    declared = _json(history, "params", "diff", "HEAD", "--all", "--deps")["params.yaml"]
    assert set(declared) == set(everything)  # check_params declares the whole file
    # ... so ask dvc.yaml which keys a stage that *reads* them declares (all but check_params).
    stages = YAML(typ="safe").load((history / "dvc.yaml").read_text())["stages"]
    sections = {p for name, st in stages.items() if name != "check_params" for p in st.get("params", [])}
    assert all(isinstance(p, str) for p in sections), sections
    unread = {key for key in everything if not any(key == p or key.startswith(f"{p}.") for p in sections)}
    assert unread == set(), (
        "params.yaml keys that no stage in dvc.yaml lists under `params:` (changing them reruns nothing)"
    )


def test_metrics_diff_moves_only_what_the_change_can_move(history):
    diff = _json(history, "metrics", "diff", "HEAD~1", "HEAD")
    assert set(diff) == {"data/eval/metrics.json", "data/train/summary.json"}
    assert {"test.rmse", "ood.rmse", "tutorial.rmse"} <= set(diff["data/eval/metrics.json"])
    assert "best_val_loss" in diff["data/train/summary.json"]
    for path, keys in LR_INVARIANT.items():
        assert not keys & set(diff[path]), f"{path}: metrics that a training change cannot move are in the diff"
    for path, changes in diff.items():
        for key, change in changes.items():
            assert change["old"] != change["new"], f"{path}: {key} listed as changed but equal"


def test_plots_diff_overlays_both_revisions_of_every_plot(history):
    plots = _json(history, "plots", "diff", "HEAD~1", "HEAD")
    assert "errors" not in plots
    changes = {c.name: c for c in plot_changes(plots)}
    assert set(changes) == PLOTS
    for name, change in changes.items():
        assert list(change.rows) == ["HEAD~1", "HEAD"], name
        assert min(change.rows.values()) > 0 and len(set(change.rows.values())) == 1, (name, change.rows)
        assert change.changed is True, f"{name}: a new learning rate should move the plotted values"


def test_fresh_clone_reproduces_head_without_churn(history, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(history), str(clone))
    dvc(clone, "repro")  # no DVC cache in a clone: every stage runs again
    assert git(clone, "status", "--porcelain").stdout == "", "a rerun changed committed outputs"
    assert _json(clone, "metrics", "diff", "HEAD") == {}
    assert _json(clone, "params", "diff", "HEAD") == {}
    assert not any(c.changed for c in plot_changes(_json(clone, "plots", "diff", "HEAD")))


def test_report_end_to_end(history, tmp_path):
    out = tmp_path / "review" / "report.md"
    run([sys.executable, "-m", "circlefit", "report", "HEAD~1", "HEAD", "-o", str(out)], history)
    text = out.read_text()
    assert text.startswith("## circlefit: `HEAD~1` → `HEAD`")
    assert "| `train.lstsq.margin` | 0.05 | 0.04 |  |" in text
    assert "| `data/eval/metrics.json` | `test.rmse` |" in text and " %" in text
    assert "[report_plots/index.html](report_plots/index.html)" in text
    assert (out.parent / "report_plots" / "index.html").is_file()
    for name in PLOTS:
        assert f"| `{name}` | changed |" in text


def test_evaluate_metrics_do_not_depend_on_the_machines_thread_count(history, tmp_path):
    # 200k out-of-domain rows: enough that 3 intra-op threads change the last bits of the
    # predictions (torch's default thread count is the machine's core count).
    repo = tmp_path / "proj"
    shutil.copytree(history, repo, symlinks=True)
    dump_yaml(merge(repo_params(), merge(SMALL, {"data": {"ood": {"n": 200_000}}})), repo / "params.yaml")
    stages = YAML(typ="safe").load((repo / "dvc.yaml").read_text())["stages"]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import torch\ntorch.set_num_threads(3)\n")
    outputs = []
    for extra in ({}, {"PYTHONPATH": str(site)}):
        for stage in ("generate", "evaluate"):  # the trained model and stats are reused as they are
            proc = subprocess.run(stages[stage]["cmd"], shell=True, cwd=repo, env=env() | extra, capture_output=True)
            assert proc.returncode == 0, proc.stderr.decode()
        outputs.append((repo / "data/eval/metrics.json").read_bytes())
    assert outputs[0] == outputs[1]
