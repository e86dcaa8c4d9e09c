"""Portable bytes: the tracked outputs do not depend on the CPU's kernel dispatch, the thread count or the pins.

One machine cannot be another vendor's CPU, but it can run the kernel libraries down their other
branches: MKL's code paths (MKL_CBWR), ATen's vector width (ATEN_CPU_CAPABILITY), OpenBLAS's
kernels for other cores (OPENBLAS_CORETYPE: Sandybridge has no FMA), numpy's SIMD targets and
thread counts. The stages run with circlefit's own pins switched off (CIRCLEFIT_PIN_KERNELS=0),
so what holds here holds by the numeric policy alone (RELIABILITY.md). The negative control
runs, in the same processes' settings, a plain BLAS and a plain torch Gram matrix, and shows
that those do change: the settings are live, so the test can fail.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_stages import ok, stage

from conftest import FIGURES, REPO, copy_project, dump_yaml, env, git, merge, repo_params, run

pytestmark = pytest.mark.slow

SETTINGS: dict[str, dict[str, str]] = {
    "as is": {},
    "MKL_CBWR=AUTO": {"MKL_CBWR": "AUTO"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "OPENBLAS_CORETYPE=Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "OPENBLAS_CORETYPE=Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "numpy without AVX2/FMA": {"NPY_DISABLE_CPU_FEATURES": "AVX2,FMA3,AVX512F,AVX512_SKX"},
    "1 BLAS/OpenMP thread": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
TRACKED = (
    "data/model/weights.safetensors",
    "data/train/loss.tsv",
    "data/train/summary.json",
    "data/eval/metrics.json",
    "data/eval/predicted_vs_true.csv",
    "data/eval/error_by_radius.csv",
    "data/export/model.onnx",
    "data/export/model.json",
    "data/export/probes.json",
)
# The control: a BLAS Gram matrix of elementwise-built features, and torch's float32 one.
CONTROL = """
import hashlib, numpy as np, torch
rng = np.random.default_rng(0)
z, w, b = rng.standard_normal((6554, 2)), rng.standard_normal((2, 256)), rng.standard_normal(256)
h = np.maximum(z[:, :1] * w[0] + z[:, 1:] * w[1] + b, 0)
t = torch.from_numpy(h.astype(np.float32))
print(hashlib.sha256((h.T @ h).tobytes()).hexdigest(), hashlib.sha256((t.T @ t).numpy().tobytes()).hexdigest())
"""


def _digests(repo: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((repo / rel).read_bytes()).hexdigest() for rel in TRACKED}


def _stages(repo: Path, extra: dict[str, str], params: str = "params.yaml") -> None:
    e = env() | {"CIRCLEFIT_PIN_KERNELS": "0"} | extra
    for name in ("train", "evaluate", "export"):
        argv = stage_argv_with(name, params)
        proc = subprocess.run(argv, cwd=repo, env=e, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (name, extra, proc.stderr)


def stage_argv_with(name: str, params: str) -> list[str]:
    from test_stages import stage_argv

    return stage_argv(name, params=params)


def test_tracked_outputs_do_not_depend_on_kernel_dispatch(tmp_path: Path) -> None:
    repo = copy_project(tmp_path / "proj", repo_params())
    ok(stage(repo, "generate"))
    ok(stage(repo, "normalize"))
    outputs, controls = {}, {}
    for label, extra in SETTINGS.items():
        _stages(repo, extra)
        outputs[label] = _digests(repo)
        e = env() | {"CIRCLEFIT_PIN_KERNELS": "0"} | extra
        proc = subprocess.run([sys.executable, "-c", CONTROL], env=e, capture_output=True, text=True, check=True)
        controls[label] = tuple(proc.stdout.split())
    first = outputs["as is"]
    differing = {label: [k for k in first if out[k] != first[k]] for label, out in outputs.items()}
    assert not any(differing.values()), differing
    blas, torch_ = ({c[i] for c in controls.values()} for i in (0, 1))
    FIGURES["dispatch"] = (
        f"{len(SETTINGS)} settings: tracked outputs identical; control: {len(blas)} distinct BLAS Gram "
        f"matrices, {len(torch_)} distinct torch ones"
    )
    assert len(blas) > 1 and len(torch_) > 1, controls  # the settings did change what unpinned code computes


def test_one_and_two_threads_train_the_same_bytes(tmp_path: Path) -> None:
    """train.threads 1 vs 2: weights, curve, metrics and plots identical (the summary records the count)."""
    base = repo_params()
    repo = copy_project(tmp_path / "proj", base)
    ok(stage(repo, "generate"))
    ok(stage(repo, "normalize"))
    got = {}
    for threads in (1, 2):
        dump_yaml(merge(base, {"train": {"threads": threads}}), repo / "p.yaml")
        _stages(repo, {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}, "p.yaml")
        got[threads] = _digests(repo)
    same = [rel for rel in TRACKED if got[1][rel] == got[2][rel]]
    assert set(same) >= {
        "data/model/weights.safetensors",
        "data/train/loss.tsv",
        "data/eval/metrics.json",
        "data/eval/predicted_vs_true.csv",
        "data/eval/error_by_radius.csv",
    }, same


def _clone(dest: Path) -> Path:
    """The working tree as a fresh clone would have it: every tracked (and untracked, not ignored) file, committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if (REPO / rel).is_file() and not rel.startswith(("tests/", "bench/", "examples/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "clone")
    return dest


def test_a_fresh_clone_reproduces_the_committed_lock(tmp_path: Path) -> None:
    """The quick start on this CPU: `dvc repro` in a fresh clone (no cache) leaves `git status` clean."""
    repo = _clone(tmp_path / "clone")
    proc = run([str(Path(sys.executable).parent / "dvc"), "repro"], repo)
    # Stages whose outputs are cached (absent in a clone) ran; check_params (no outputs) and evaluate
    # (all its outputs git-tracked, its deps reproduced bit for bit) are then up to date.
    ran = set(re.findall(r"Running stage '(\w+)'", proc.stdout))
    assert {"generate", "normalize", "train", "export"} <= ran, proc.stdout
    status = git(repo, "status", "--porcelain").stdout
    assert status == "", f"dvc repro changed tracked files on this CPU:\n{status}"
