"""End to end through export: real `dvc repro` in temp git copies; path-independent bytes; failure leaves nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from circlefit.runtime import load_session, predict

from conftest import BIN, dump_yaml, dvc, env, git, run

pytestmark = pytest.mark.slow
OUTS = (
    "data/export/model.onnx",
    "data/export/model.json",
    "data/export/probes.json",
    "data/export/README.md",  # the model card
    "data/export/test_data_set_0/input_0.pb",  # the ONNX Model Zoo layout
    "data/export/test_data_set_0/output_0.pb",
)
INPUTS = ("data/generated", "data/stats.json", "data/model/weights.safetensors", "data/eval/metrics.json")


def _export_cmd(repo: Path) -> list[str]:
    cmd = YAML(typ="safe").load((repo / "dvc.yaml").read_text())["stages"]["export"]["cmd"]
    return [str(BIN / "python"), *cmd.split()[1:]]


def test_repro_through_export_then_copy_elsewhere_then_fail_cleanly(project, tmp_path: Path) -> None:
    repo = project()
    dvc(repo, "repro")
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}
    model, sidecar_path, probes_path = (repo / p for p in OUTS[:3])
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert sidecar["metrics"] == json.loads((repo / "data/eval/metrics.json").read_text())
    for r in sidecar["parity"]["runtimes"].values():
        assert r["points"] == sum(sidecar["parity"]["sets"].values()) and r["verdict"] == "within tolerance"

    # Python reproduces the probes from the file alone; so does the console script.
    probes = json.loads(probes_path.read_text())
    xy = np.asarray(probes["inputs"], dtype=np.float32)
    got, want = predict(load_session(model), xy), np.asarray(probes["expected"])
    tol = probes["tolerance"]
    assert (np.abs(got - want) <= tol["rtol"] * (np.abs(want) + tol["offset"])).all()
    csv = "x,y\n" + "".join(f"{x!s},{y!s}\n" for x, y in xy)
    proc = subprocess.run([str(BIN / "circlefit"), "predict"], input=csv, cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal([np.float32(line.split(",")[2]) for line in proc.stdout.splitlines()[1:]], got)

    # The model and the whole export directory are declared DVC artifacts.
    code = (
        "from dvc.repo import Repo; a = Repo().artifacts.read()['dvc.yaml']; "
        "print(*(f'{n} {a[n].type} {a[n].path}' for n in sorted(a)))"
    )
    assert run([str(BIN / "python"), "-c", code], repo).stdout.split() == [
        *("circlefit-export", "model", "data/export"),
        *("circlefit-model", "model", "data/export/model.onnx"),
    ]

    # Same inputs, another checkout path (its own copy of circlefit on sys.path): byte-identical outputs.
    other = project(name="elsewhere/deeper/checkout")
    where = run([str(BIN / "python"), "-c", "import circlefit; print(circlefit.__file__)"], other).stdout
    assert where.startswith(str(other)), where
    for rel in INPUTS:
        dst = other / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (repo / rel).is_dir() else shutil.copy)(repo / rel, dst)
    # ...with every DeprecationWarning shown: the supported exporter, and nothing printed but our own log lines.
    e = env() | {"PYTHONWARNINGS": "always::DeprecationWarning", "CIRCLEFIT_LOG": "INFO"}
    proc = subprocess.run(_export_cmd(other), cwd=other, env=e, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and all(line.startswith("circlefit export: ") for line in proc.stderr.splitlines()), (
        proc.stdout + proc.stderr
    )
    for rel in OUTS:
        assert (other / rel).read_bytes() == (repo / rel).read_bytes(), rel
        assert str(tmp_path).encode() not in (other / rel).read_bytes()  # no checkout path inside

    # Beyond tolerance: the stage fails, names the worst input, and leaves no model, sidecar or probes.
    params = YAML(typ="safe").load((repo / "params.yaml").read_text())
    params["export"]["rtol"] = 1e-12
    dump_yaml(params, repo / "params.yaml")
    git(repo, "commit", "-qam", "impossible tolerance")
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0
    err = failed.stdout + failed.stderr
    assert "circlefit export: error: " in err and "worst input xy=(" in err, err
    assert [p for p in OUTS if (repo / p).exists()] == []
    assert [p.name for p in (repo / "data/export").iterdir() if p.name != ".gitignore"] == []
