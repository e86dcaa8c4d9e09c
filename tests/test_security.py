"""No code runs from data: a scan of the library and stage sources, and live payloads that are refused.

Weights: tests/test_checkpoint.py and tests/test_bad_data.py hand crafted pickles to the loader and
the stages (the sentinel never appears; a plain pickle.load does create it). ONNX: the consumer path
checks the sidecar's sha256 (tests/test_predict_cli.py, tests/test_bad_data.py). Here: the sources,
and YAML carrying a !!python tag.
"""

from __future__ import annotations

import ast
import subprocess
import textwrap
from pathlib import Path

import pytest

from circlefit.config import ConfigError, load_params

from conftest import BIN, REPO, env

SCANNED = sorted([*(REPO / "circlefit").rglob("*.py"), *(REPO / "stages").rglob("*.py")])
CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}
MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "jsonpickle"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "full_load", "unsafe_load_all", "full_load_all"}
SHELLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execv"), ("os", "spawnl")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _kw(call: ast.Call, name: str) -> object:
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def findings(source: str, name: str = "<src>") -> list[str]:
    """Ways a file could run code from data: eval/exec, unpickling, unsafe YAML, torch.load with pickles, shells."""
    out = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{where}: imports {m}" for m in mods if m.split(".")[0] in MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        head, _, attr = func.rpartition(".")
        if func in CALLS or (head == "builtins" and attr in CALLS):
            out.append(f"{where}: calls {func}()")
        elif head.split(".")[-1] == "yaml" and attr in UNSAFE_YAML:
            out.append(f"{where}: {func}() (PyYAML's load builds arbitrary objects; use circlefit.config)")
        elif func.split(".")[-1] == "YAML" and _kw(node, "typ") != "safe":
            out.append(f"{where}: ruamel YAML(typ={_kw(node, 'typ')!r}); only typ='safe' builds no objects")
        elif func in ("torch.load", "torch.jit.load", "torch.package.PackageImporter"):
            if func != "torch.load" or _kw(node, "weights_only") is not True:
                out.append(f"{where}: {func}() may unpickle (weights are safetensors)")
        elif attr == "load" and head in ("np", "numpy") and _kw(node, "allow_pickle") is not False:
            out.append(f"{where}: {func}() without allow_pickle=False")
        elif _kw(node, "allow_pickle") is True:
            out.append(f"{where}: {func}(allow_pickle=True)")
        elif (head, attr) in SHELLS or (head == "subprocess" and _kw(node, "shell") is not None):
            out.append(f"{where}: {func}() runs a shell")
    return out


def test_library_and_stages_run_no_code_from_data() -> None:
    assert len(SCANNED) >= 20, SCANNED
    problems = [f for path in SCANNED for f in findings(path.read_text(), str(path.relative_to(REPO)))]
    assert problems == []


def test_the_scan_catches_what_it_looks_for() -> None:
    bad = textwrap.dedent("""
        import pickle
        from dill import loads
        import yaml, torch, numpy as np, subprocess, os, builtins
        from ruamel.yaml import YAML
        eval("1"); exec("x = 1"); builtins.eval("2"); compile("1", "f", "eval"); __import__("os")
        yaml.load(s); yaml.unsafe_load(s); yaml.full_load(s); YAML().load(s); YAML(typ="unsafe").load(s)
        torch.load(p); torch.load(p, weights_only=False); torch.jit.load(p)
        np.load(p); np.load(p, allow_pickle=True); np.save(p, a, allow_pickle=True)
        subprocess.run(cmd, shell=True); os.system("ls")
    """)
    found = findings(bad)
    assert len(found) == 20, "\n".join(found)
    good = textwrap.dedent("""
        import json, re, yaml, torch, numpy as np, subprocess
        from ruamel.yaml import YAML
        model.eval(); re.compile("x"); json.loads(s); yaml.safe_load(s); YAML(typ="safe").load(s)
        torch.load(p, weights_only=True); np.load(p, allow_pickle=False); np.save(p, a, allow_pickle=False)
        subprocess.run(["git", "log"])
    """)
    assert findings(good) == []


def test_yaml_python_tag_is_refused_and_never_runs(tmp_path: Path) -> None:
    """The corpus file with a !!python tag: our loader refuses it by name; PyYAML's unsafe load would run it."""
    corpus = REPO / "tests/bad_params/python-tag.yaml"
    sentinel = tmp_path / "circlefit-yaml-sentinel"  # the payload runs `touch circlefit-yaml-sentinel`
    code = "import sys; from circlefit.config import load_params; load_params(sys.argv[1])"
    proc = subprocess.run([str(BIN / "python"), "-c", code, str(corpus)], cwd=tmp_path, env=env(), capture_output=True)
    assert proc.returncode != 0 and b"could not determine a constructor" in proc.stderr
    assert not sentinel.exists()
    with pytest.raises(ConfigError, match=r"malformed YAML at train\.device .*python/object/apply:os\.system"):
        load_params(corpus)
    unsafe = "import sys, yaml; yaml.unsafe_load(open(sys.argv[1]))"  # proof the payload is live
    subprocess.run([str(BIN / "python"), "-c", unsafe, str(corpus)], cwd=tmp_path, env=env(), capture_output=True)
    assert sentinel.exists(), "the payload did not fire: this test would prove nothing"
