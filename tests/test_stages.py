"""The stage CLIs, run exactly as dvc.yaml runs them (subprocesses in a copy of the project)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from ruamel.yaml import YAML
from test_evaluate import assert_metrics_complete

from circlefit.model.weights import load_weights

from conftest import REPO, SMALL, copy_project, dump_yaml, merge, repo_params, run

DVC_YAML = YAML(typ="safe").load((REPO / "dvc.yaml").read_text())
STAGES = ("generate", "normalize", "train", "evaluate")
FILES = ("train.npy", "val.npy", "test.npy", "ood.npy", "tutorial.npy", "manifest.json")


def stage_argv(name: str, importtime: bool = False, **paths: str) -> list[str]:
    """The stage's dvc.yaml command with this interpreter; `paths` replace option values."""
    argv = shlex.split(DVC_YAML["stages"][name]["cmd"])
    assert argv[0] == "python", argv
    argv[0:1] = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    for opt, value in paths.items():
        flag = "--" + opt.replace("_", "-")
        argv[argv.index(flag) + 1] = value
    return argv


def stage(repo: Path, name: str, importtime: bool = False, **paths: str) -> subprocess.CompletedProcess[str]:
    return run(stage_argv(name, importtime, **paths), repo, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], name: str) -> str:
    """A failed stage: exit 1 and one `circlefit NAME: error: …` line, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [s for s in proc.stderr.splitlines() if s.startswith(f"circlefit {name}: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def write_params(repo: Path, filename: str, over: dict[str, Any]) -> str:
    dump_yaml(merge(merge(repo_params(), SMALL), over), repo / filename)
    return filename


def module_file(module: str) -> str:
    """The source file of a module of this repository: a package's is its __init__.py."""
    path = module.replace(".", "/")
    return f"{path}/__init__.py" if (REPO / path).is_dir() else f"{path}.py"


def imported_modules(stderr: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", stderr, re.M)}


Runs = tuple[Path, dict[str, subprocess.CompletedProcess[str]]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """One copy of the project with check_params, generate and normalize run (with -X importtime)."""
    repo = copy_project(tmp_path_factory.mktemp("stages") / "proj", merge(repo_params(), SMALL))
    names = ("check_params", "generate", "normalize")
    return repo, {name: ok(stage(repo, name, importtime=True)) for name in names}


@pytest.fixture(scope="module")
def pipeline(prepared: Runs) -> Runs:
    """The same copy with train and evaluate run too: every stage once, in dvc.yaml order."""
    repo, procs = prepared
    return repo, {**procs, **{name: ok(stage(repo, name, importtime=True)) for name in ("train", "evaluate")}}


# --- generate + normalize: fast, no torch --------------------------------------------------


def test_generate_and_normalize_are_byte_deterministic(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", merge(repo_params(), SMALL))
    for out in ("a", "b"):
        ok(stage(repo, "generate", out=f"runs/{out}/generated"))
        ok(stage(repo, "normalize", data=f"runs/{out}/generated", out=f"runs/{out}/stats.json"))
    a, b = repo / "runs/a", repo / "runs/b"
    assert sorted(p.name for p in (a / "generated").iterdir()) == sorted(FILES)
    for name in FILES:
        assert (a / "generated" / name).read_bytes() == (b / "generated" / name).read_bytes(), name
    assert (a / "stats.json").read_bytes() == (b / "stats.json").read_bytes()
    manifest = json.loads((a / "generated/manifest.json").read_text())
    assert manifest["params"]["data"]["n"] == SMALL["data"]["n"] and manifest["held_out"] is True


def test_generate_rejects_bad_params_and_writes_nothing(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", merge(repo_params(), SMALL))
    params = write_params(repo, "exp-params.yaml", {"data": {"n": 0}})
    line = error_line(stage(repo, "generate", params=params, out="out/generated"), "generate")
    assert line == "circlefit generate: error: exp-params.yaml: data.n must be > 0, got 0"
    assert not (repo / "out").exists()


def test_normalize_refuses_a_constant_label(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", merge(repo_params(), SMALL))
    params = write_params(repo, "circle.yaml", {"data": {"source": "circle"}})
    ok(stage(repo, "generate", params=params))
    line = error_line(stage(repo, "normalize", params=params), "normalize")
    assert line.startswith("circlefit normalize: error: data/generated/train.npy: label has std "), line
    assert not (repo / "data/stats.json").exists()


def test_normalize_names_a_corrupt_input(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", merge(repo_params(), SMALL))
    ok(stage(repo, "generate"))
    train = repo / "data/generated/train.npy"
    train.write_bytes(train.read_bytes()[:200])
    line = error_line(stage(repo, "normalize"), "normalize")
    assert "data/generated/train.npy: " in line and "truncated or corrupt" in line, line
    assert not (repo / "data/stats.json").exists()


@pytest.mark.slow
def test_the_default_train_and_evaluate_import_no_torch(pipeline: Runs) -> None:
    """lstsq on the CPU and the float64 reference need numpy only (BENCHMARKS.md: the stages' time)."""
    _, procs = pipeline
    for name in ("train", "evaluate"):
        mods = imported_modules(procs[name].stderr)
        assert "circlefit.config" in mods, "the import log was not captured"
        assert not {m for m in mods if m.split(".")[0] in ("torch", "onnx", "onnxruntime")}, name


def test_stages_without_a_model_never_import_torch(prepared: Runs) -> None:
    _, procs = prepared
    for name in ("check_params", "generate", "normalize"):
        mods = imported_modules(procs[name].stderr)
        assert "circlefit.config" in mods, "the import log was not captured"
        assert not {m for m in mods if m.split(".")[0] in ("torch", "onnx", "onnxruntime")}, name


@pytest.mark.slow
def test_dvc_yaml_deps_list_exactly_the_modules_each_stage_imports(pipeline: Runs) -> None:
    repo, procs = pipeline
    # The default train (lstsq, numpy only) imports less than the gradient method does; dvc.yaml
    # lists what either imports, so a change to any of them reruns the stage.
    gradient = write_params(
        repo, "gradient.yaml", {"train": {"method": "gradient", "gradient": {"epochs": 10, "lbfgs_steps": 0}}}
    )
    other = ok(stage(repo, "train", importtime=True, params=gradient, model="g/w.safetensors", curve="g/loss.tsv",
                     summary="g/s.json", timing="g/t.json"))  # fmt: skip
    for name in STAGES:
        mods = imported_modules(procs[name].stderr)
        if name == "train":
            mods |= imported_modules(other.stderr)
        assert "circlefit.config" in mods and "stages.edge" in mods, (name, sorted(mods))
        used = {module_file(m) for m in mods if m.split(".")[0] in ("circlefit", "stages")}
        used.add(f"stages/{name}.py")  # run as __main__, so not in the import log
        listed = {d for d in DVC_YAML["stages"][name]["deps"] if d.startswith(("circlefit/", "stages/"))}
        assert used == listed, (name, sorted(used - listed), sorted(listed - used))


# --- train + evaluate ----------------------------------------------------------------------


@pytest.mark.slow
def test_train_and_evaluate_outputs(pipeline: Runs) -> None:
    repo, _ = pipeline
    weights = load_weights(repo / "data/model/weights.safetensors")
    assert [w.shape[0] for w, _ in weights.layers[:-1]] == SMALL["model"]["hidden"]
    rows = list(csv.DictReader((repo / "data/train/loss.tsv").open(), delimiter="\t"))
    # The default method, lstsq: one curve row per candidate, the summary's best is the lowest val loss.
    assert list(rows[0]) == ["step", "phase", "directions", "edge", "smoothness", "train_loss", "val_loss"]
    s = repo_params()["train"]["lstsq"]
    per_layout = len(s["edge"]) * len(s["smoothness"])
    assert [int(r["directions"]) for r in rows[::per_layout]] == s["directions"]
    assert {r["phase"] for r in rows} == {"select"}  # SMALL's splits fit in the selection subsample: no refit
    summary = json.loads((repo / "data/train/summary.json").read_text())
    assert summary["steps"] == len(rows) == len(s["directions"]) * per_layout
    assert summary["threads"] == repo_params()["train"]["threads"]
    assert summary["best_val_loss"] == min(float(r["val_loss"]) for r in rows)
    assert "wall_s" in json.loads((repo / "data/train/timing.json").read_text())
    metrics = json.loads((repo / "data/eval/metrics.json").read_text())
    assert_metrics_complete(metrics, repo_params()["evaluate"]["bands"])
    assert metrics["test"]["held_out"] is True
    assert metrics["test"]["rmse"] < metrics["baseline_constant_mean"]["test_rmse"] / 10
    pred = list(csv.DictReader((repo / "data/eval/predicted_vs_true.csv").open()))
    assert list(pred[0]) == ["radius", "actual", "predicted", "abs_error"]
    assert len(pred) == min(SMALL["evaluate"]["plot_points"], metrics["test"]["n"])
    by_radius = list(csv.DictReader((repo / "data/eval/error_by_radius.csv").open()))
    assert {r["split"] for r in by_radius} == {"test", "ood"}


@pytest.mark.slow
def test_train_stage_is_byte_deterministic(pipeline: Runs) -> None:
    repo, _ = pipeline
    ok(stage(repo, "train", model="again/w.safetensors", curve="again/loss.tsv", summary="again/s.json",
             timing="again/t.json"))  # fmt: skip
    assert (repo / "again/w.safetensors").read_bytes() == (repo / "data/model/weights.safetensors").read_bytes()
    assert (repo / "again/loss.tsv").read_bytes() == (repo / "data/train/loss.tsv").read_bytes()
    assert (repo / "again/s.json").read_bytes() == (repo / "data/train/summary.json").read_bytes()


@pytest.mark.slow
def test_train_divergence_exits_nonzero_and_writes_no_model(pipeline: Runs) -> None:
    repo, _ = pipeline
    params = write_params(
        repo,
        "diverge.yaml",
        {"train": {"method": "gradient", "gradient": {"optimizer": "sgd", "lr": 1e10, "schedule": "constant"}}},
    )
    proc = stage(repo, "train", params=params, model="div/w.safetensors", curve="div/loss.tsv",
                 summary="div/s.json", timing="div/t.json")  # fmt: skip
    line = error_line(proc, "train")
    assert re.search(r"loss became (nan|inf) at step \d+ \(lr 1e\+10\)", line), line
    assert not (repo / "div").exists()  # no model, no curve, no summary


@pytest.mark.slow
def test_train_cuda_without_gpu_names_file_and_key(pipeline: Runs) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    repo, _ = pipeline
    params = write_params(repo, "cuda-params.yaml", {"train": {"device": "cuda"}})
    proc = stage(repo, "train", params=params, model="cuda/w.safetensors", curve="cuda/loss.tsv",
                 summary="cuda/s.json", timing="cuda/t.json")  # fmt: skip
    line = error_line(proc, "train")
    assert "cuda-params.yaml: train.device is 'cuda'" in line, line
    assert not (repo / "cuda").exists()


@pytest.mark.slow
def test_evaluate_names_a_missing_model(pipeline: Runs) -> None:
    repo, _ = pipeline
    proc = stage(repo, "evaluate", model="nowhere/w.safetensors", metrics="m/metrics.json")
    line = error_line(proc, "evaluate")
    assert "nowhere/w.safetensors: model file not found" in line, line
    assert not (repo / "m").exists()
