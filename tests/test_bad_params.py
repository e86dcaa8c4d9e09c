"""The bad-params corpus (tests/bad_params/): each file is refused by real stage CLIs before any output
is touched, with one line naming the file and the dotted key; under `dvc repro`, before DVC deletes anything.

tests/test_config.py checks the loader's messages case by case (parse_params); this file runs the
stage processes on committed files, as a user would meet them.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from test_stages import stage_argv

from conftest import FIGURES, REPO, SMALL, copy_project, dvc, merge, repo_params, run

CORPUS = Path(__file__).resolve().parent / "bad_params"
FILES = sorted(CORPUS.glob("*.yaml"))
NO_KEY = "(file)"
OLD = 1_000_000_000  # mtime (s) given to the pre-existing outputs: any rewrite moves it
# Every file goes through check_params (what `dvc repro` runs first) and generate (a stage with
# outputs; it validates the whole file, not only `data`). Each other stage is also run on a file
# from its own section. `device: cuda` is a legal value that generate rightly accepts: it goes
# through check_params and train, the two stages that ask torch for a GPU.
ALWAYS = ("check_params", "generate")
OWN_SECTION = {
    "normalize": "zero-min-std.yaml",
    "train": "renamed-lr.yaml",
    "evaluate": "misspelled-bands.yaml",
    "export": "old-opset.yaml",
}
CUDA = "cuda-without-gpu.yaml"


def expected_key(path: Path) -> str:
    """The key the error must name (`# expect:` on the first line; (file) for a defect of the whole file)."""
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    m = re.fullmatch(r"# expect: (\S+)", first)
    if m is None:
        assert path.stat().st_size == 0, f"{path.name}: first line must be '# expect: <dotted key>'"
        return NO_KEY
    return m.group(1)


def names_key(message: str, key: str) -> bool:
    """`key` as a whole dotted key: train.lr is not named by train.lrr nor by train.lr_decay."""
    return re.search(rf"(?<![\w.\[]){re.escape(key)}(?![\w\[]|\.\w)", message) is not None


def stages_for(path: Path) -> tuple[str, ...]:
    if path.name == CUDA:
        return ("check_params", "train")
    return ALWAYS + tuple(name for name, f in OWN_SECTION.items() if f == path.name)


def outputs(dvc_yaml: dict) -> list[str]:
    outs = [o for st in dvc_yaml["stages"].values() for o in st.get("outs", [])]
    return [*(next(iter(o)) if isinstance(o, dict) else o for o in outs), "data/train/timing.json"]


def state(repo: Path) -> dict[str, tuple[int, str]]:
    """Every path under data/ with its mtime and content hash (directories: mtime only)."""
    out = {}
    for p in sorted((repo / "data").rglob("*")):
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[p.relative_to(repo).as_posix()] = (p.stat().st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy whose every stage output already exists (old placeholder bytes, old mtimes)."""
    repo = copy_project(tmp_path_factory.mktemp("bad_params") / "proj", merge(repo_params(), SMALL))
    from ruamel.yaml import YAML

    for rel in outputs(YAML(typ="safe").load((repo / "dvc.yaml").read_text())):
        path = repo / rel
        if rel == "data/generated":
            path.mkdir(parents=True)
            path = path / "train.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"output of an earlier run: {rel}\n")
    for p in (repo / "data").rglob("*"):
        os.utime(p, (OLD, OLD))
    return repo


@dataclass
class Outcome:
    file: str
    key: str
    stages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def try_file(repo: Path, path: Path) -> Outcome:
    key = expected_key(path)
    outcome = Outcome(path.name, key)
    for name in stages_for(path):
        outcome.stages.append(name)
        proc = run(stage_argv(name, params=str(path)), repo, check=False, timeout=600)
        lines = [s for s in proc.stderr.splitlines() if s.startswith(f"circlefit {name}: error: ")]
        if proc.returncode == 0:
            outcome.problems.append(f"{name}: accepted it")
            continue
        if proc.returncode != 1 or "Traceback" in proc.stderr or len(lines) != 1:
            outcome.problems.append(f"{name}: not one error line (exit {proc.returncode}): {proc.stderr[-500:]}")
            continue
        if f"{path}: " not in lines[0]:
            outcome.problems.append(f"{name}: the file is not named: {lines[0]}")
        if key != NO_KEY and not names_key(lines[0], key):
            outcome.problems.append(f"{name}: {key} is not named: {lines[0]}")
    return outcome


def test_corpus_is_large_and_every_file_says_what_it_expects() -> None:
    assert len(FILES) >= 30, len(FILES)
    keys = {f.name: expected_key(f) for f in FILES}
    sections = {k.split(".")[0].split("[")[0] for k in keys.values()}
    assert {"data", "normalize", "model", "train", "evaluate", "export"} <= sections, sections
    assert set(OWN_SECTION.values()) | {CUDA} <= set(keys)


def test_every_derived_file_differs_from_params_yaml_in_one_place() -> None:
    """Kept in sync: a params.yaml change shows up here; then run tests/bad_params/regenerate.py."""
    params = (REPO / "params.yaml").read_text(encoding="utf-8").splitlines()
    derived = 0
    for path in FILES:
        text = path.read_bytes().decode("utf-8", "replace").splitlines()
        if expected_key(path) == NO_KEY and "# circlefit parameters." not in "\n".join(text):
            continue  # empty, comments only, a list: no params.yaml inside
        body = [s for s in text if not s.startswith(("# expect: ", "# defect: "))]
        ops = difflib.SequenceMatcher(None, params, body, autojunk=False).get_opcodes()
        hunks = [op for op in ops if op[0] != "equal"]
        assert len(hunks) == 1, f"{path.name}: {len(hunks)} differences from params.yaml (regenerate the corpus)"
        derived += 1
    assert derived >= 30, derived


def test_loader_refuses_every_file_naming_file_and_key() -> None:
    """In-process and fast (the stage runs below are slow): load_params on each corpus file."""
    from circlefit.config import ConfigError, load_params

    for path in FILES:
        if path.name == CUDA:
            assert load_params(path).train.device == "cuda"  # legal for the loader; the stages ask torch
            continue
        with pytest.raises(ConfigError) as info:
            load_params(path)
        msg, key = str(info.value), expected_key(path)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
        assert key == NO_KEY or names_key(msg, key), (key, msg)


@pytest.mark.slow
def test_every_bad_params_file_is_refused_naming_file_and_key_before_any_output(workspace: Path) -> None:
    before = state(workspace)
    files = [f for f in FILES if not (f.name == CUDA and torch.cuda.is_available())]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda f: try_file(workspace, f), files))
    after = state(workspace)

    tried = len(outcomes)
    rejected = sum(not any("accepted" in p for p in o.problems) for o in outcomes)
    with_key = [o for o in outcomes if o.key != NO_KEY]
    named = sum(not any("is not named" in p for p in o.problems) for o in with_key)
    runs = sum(len(o.stages) for o in outcomes)
    FIGURES["bad params"] = (
        f"{tried} tried, {rejected} rejected, {named} named the key "
        f"({tried - len(with_key)} whole-file defects have no key and name the file; "
        f"{runs} stage runs, outputs untouched: {after == before})"
    )
    problems = [f"{o.file}: {p}" for o in outcomes for p in o.problems]
    assert not problems, "\n".join(problems)
    assert after == before, "a refused params file touched an output"
    assert not (workspace / "circlefit-yaml-sentinel").exists(), "python-tag.yaml ran its payload"
    assert tried == rejected and named == len(with_key)


# --- the same files under `dvc repro`: check_params stops DVC before it deletes any output ----------

DVC_CASES = ["unknown-top-level.yaml", "renamed-lr.yaml", "zero-width-layer.yaml", "duplicate-key.yaml", "empty.yaml"]
DVC_CASES.append(CUDA)


# DVC parses params.yaml itself before it runs anything, and refuses duplicate keys with its own
# (multi-line) message; it names the file, the key and the line, though not the dotted key.
def _line_of_second(path: Path, key: str) -> int:
    lines = [i for i, s in enumerate(path.read_text().splitlines(), 1) if s.strip().startswith(f"{key}:")]
    return lines[1]


DVC_OWN = {
    "duplicate-key.yaml": [
        "unable to read: 'params.yaml'",
        'found duplicate key "lr"',
        f"line {_line_of_second(CORPUS / 'duplicate-key.yaml', 'lr')}",
    ]
}


@pytest.mark.slow
@pytest.mark.parametrize("name", DVC_CASES)
def test_dvc_repro_refuses_before_deleting_outputs(history: Path, tmp_path: Path, name: str) -> None:
    if name == CUDA and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    repo = tmp_path / "proj"
    shutil.copytree(history, repo, symlinks=True)
    lock = (repo / "dvc.lock").read_bytes()
    before = state(repo)
    shutil.copy(CORPUS / name, repo / "params.yaml")
    proc = dvc(repo, "repro", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    ran = re.findall(r"Running stage '(\w+)'", out)
    if name in DVC_OWN:
        assert ran == [] and all(s in out for s in DVC_OWN[name]), out
    else:
        assert ran == ["check_params"], out  # first, and nothing after it: DVC deleted no output
        lines = [s for s in out.splitlines() if s.startswith("circlefit check_params: error: params.yaml: ")]
        key = expected_key(CORPUS / name)
        assert len(lines) == 1 and (key == NO_KEY or names_key(lines[0], key)), out
    assert state(repo) == before
    assert (repo / "dvc.lock").read_bytes() == lock


def test_check_params_deps_are_every_module_it_can_import(tmp_path: Path) -> None:
    """dvc.yaml lists what check_params imports on its longest path: an error (io) for device: cuda (device)."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device: cuda passes")
    from ruamel.yaml import YAML
    from test_stages import imported_modules, module_file

    argv = stage_argv("check_params", importtime=True, params=str(CORPUS / CUDA))
    proc = run(argv, REPO, check=False)
    assert proc.returncode == 1 and "train.device is 'cuda'" in proc.stderr, proc.stderr
    used = {module_file(m) for m in imported_modules(proc.stderr) if m.split(".")[0] in ("circlefit", "stages")}
    deps = YAML(typ="safe").load((REPO / "dvc.yaml").read_text())["stages"]["check_params"]["deps"]
    assert used | {"stages/check_params.py"} == {d for d in deps if d.startswith(("circlefit/", "stages/"))}
