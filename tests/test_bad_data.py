"""Bad data reaching a real stage CLI: one error line naming the file, exit 1, and no output touched.

Unit tests of the readers are in test_io.py (arrays, JSON), test_normalize.py (stats) and
test_checkpoint.py (weights); here each broken file is handed to the stage that consumes it, in a
project whose every output already exists from a real run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file
from test_stages import stage_argv

from conftest import BIN, FIGURES, PicklePayload, env, run

pytestmark = pytest.mark.slow

Make = Callable[[Path], dict[str, str]]  # builds the bad input in the workspace; returns stage path options


def _state(repo: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(repo).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted((repo / "data").rglob("*"))
        if p.is_file()
    }


def _array(name: str, file: str, change: Callable[[np.ndarray], np.ndarray | bytes | None]) -> Make:
    """A copy of data/generated at bad/NAME with FILE changed (an array, raw bytes, or None: deleted)."""

    def make(ws: Path) -> dict[str, str]:
        d = ws / "bad" / name
        shutil.copytree(ws / "data/generated", d)
        new = change(np.load(d / file))
        if new is None:
            (d / file).unlink()
        elif isinstance(new, bytes):
            (d / file).write_bytes(new)
        else:
            np.save(d / file, new)
        return {"data": f"bad/{name}"}

    return make


def _cut(name: str, file: str) -> Make:
    """A copy of data/generated at bad/NAME with FILE cut to half its bytes."""

    def make(ws: Path) -> dict[str, str]:
        d = ws / "bad" / name
        shutil.copytree(ws / "data/generated", d)
        (d / file).write_bytes((d / file).read_bytes()[: (d / file).stat().st_size // 2])
        return {"data": f"bad/{name}"}

    return make


def _pickled_rows(a: np.ndarray) -> np.ndarray:
    """An object array whose unpickling would create bad/obj/PWNED in the stage's directory (np.save pickles it)."""
    return np.array([PicklePayload(Path("bad/obj/PWNED"))] * len(a), dtype=object)


def _set(row: int, col: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[row, col] = value
        return a

    return change


def _stats(name: str, change: Callable[[str], str]) -> Make:
    def make(ws: Path) -> dict[str, str]:
        path = ws / "bad" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(change((ws / "data/stats.json").read_text()))
        return {"stats": f"bad/{name}"}

    return make


def _stats_json(edit: Callable[[dict], None]) -> Callable[[str], str]:
    def change(text: str) -> str:
        doc = json.loads(text)
        edit(doc)
        return json.dumps(doc)

    return change


def _manifest_without_radius(ws: Path) -> dict[str, str]:
    d = ws / "bad" / "no-radius"
    shutil.copytree(ws / "data/generated", d)
    doc = json.loads((d / "manifest.json").read_text())
    del doc["train_radius"]
    (d / "manifest.json").write_text(json.dumps(doc))
    return {"data": "bad/no-radius"}


def _weights(name: str, change: Callable[[Path, Path], None]) -> Make:
    def make(ws: Path) -> dict[str, str]:
        path = ws / "bad" / name / "weights.safetensors"
        path.parent.mkdir(parents=True)
        change(ws / "data/model/weights.safetensors", path)
        return {"model": f"bad/{name}/weights.safetensors"}

    return make


def _pickle(src: Path, dst: Path) -> None:
    dst.write_bytes(pickle.dumps({"weights": src.read_bytes(), "x": PicklePayload(dst.parent / "PWNED")}))


def _truncate(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[:-100])


def _resave(edit: Callable[[dict[str, np.ndarray], dict[str, str]], None]) -> Callable[[Path, Path], None]:
    def change(src: Path, dst: Path) -> None:
        with safe_open(str(src), framework="np") as f:
            meta = dict(f.metadata())
            tensors = {k: f.get_tensor(k).copy() for k in f.keys()}  # noqa: SIM118
        edit(tensors, meta)
        save_file(tensors, str(dst), metadata=meta)

    return change


def _nan_weight(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    name = next(k for k in sorted(tensors) if k.endswith("weight"))
    tensors[name].flat[0] = np.nan


def _foreign_tag(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    meta["circlefit"] = meta["circlefit"].replace("circlefit-weights/", "other-weights/")


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    make: Make
    file: str  # the file the message must name (relative to the workspace)
    fragment: str  # and what it must say about it


CASES = [
    Case("truncated train.npy", "train", _cut("trunc", "train.npy"), "bad/trunc/train.npy", "truncated or corrupt"),
    Case("train.npy of pickled objects", "train", _array("obj", "train.npy", _pickled_rows),
         "bad/obj/train.npy", "it holds pickled Python objects; refusing to load it"),
    Case("not an array at all", "evaluate", _array("junk", "test.npy", lambda a: b"x,y,label\n1,2,5\n"),
         "bad/junk/test.npy", "not a .npy file (no .npy header)"),
    Case("float64 val.npy", "train", _array("f64", "val.npy", lambda a: a.astype(np.float64)),
         "bad/f64/val.npy", "expected dtype float32, got float64"),
    Case("val.npy of width 2", "train", _array("width", "val.npy", lambda a: a[:, :2].copy()),
         "bad/width/val.npy", "expected shape [N, 3]"),
    Case("missing val.npy", "train", _array("gone", "val.npy", lambda a: None), "bad/gone/val.npy", "file not found"),
    Case("NaN x in test.npy", "evaluate", _array("nan", "test.npy", _set(5, 0, np.nan)),
         "bad/nan/test.npy", "non-finite value at row 5"),
    Case("+Inf y in ood.npy", "export", _array("inf", "ood.npy", _set(0, 1, np.inf)),
         "bad/inf/ood.npy", "non-finite value at row 0"),
    Case("NaN label in train.npy", "normalize", _array("nanlabel", "train.npy", _set(3, 2, np.nan)),
         "bad/nanlabel/train.npy", "non-finite value at row 3"),
    Case("empty test split", "evaluate", _array("empty", "test.npy", lambda a: a[:0].copy()),
         "bad/empty/test.npy", "array is empty"),
    Case("manifest without train_radius", "evaluate", _manifest_without_radius,
         "bad/no-radius/manifest.json", "train_radius must be a finite number"),
    Case("stats with zero std", "train", _stats("zero-std.json", _stats_json(lambda d: d["std"].__setitem__(0, 0.0))),
         "bad/zero-std.json", "std must be finite and > 0"),
    Case("stats with NaN mean", "evaluate", _stats("nan.json", lambda t: t.replace('"mean": [', '"mean": [NaN, ', 1)),
         "bad/nan.json", "NaN is not a number JSON allows"),
    Case("truncated stats", "export", _stats("cut.json", lambda t: t[: len(t) // 2]), "bad/cut.json", "not valid JSON"),
    Case("stats of another run", "export",
         _stats("other.json", _stats_json(lambda d: d["mean"].__setitem__(0, d["mean"][0] + 1e-3))),
         "data/model/weights.safetensors", "differs from bad/other.json"),
    Case("weights: crafted pickle", "evaluate", _weights("pickle", _pickle),
         "bad/pickle/weights.safetensors", "refusing to load"),
    Case("weights: truncated", "export", _weights("cut", _truncate), "bad/cut/weights.safetensors", "refusing to load"),
    Case("weights: NaN in a tensor", "evaluate", _weights("nanw", _resave(_nan_weight)),
         "bad/nanw/weights.safetensors", "has non-finite values"),
    Case("weights: foreign format tag", "export", _weights("tag", _resave(_foreign_tag)),
         "bad/tag/weights.safetensors", "unknown format tag"),
]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(history: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a project after a real `dvc repro`: every input and output exists."""
    ws = tmp_path_factory.mktemp("bad_data") / "proj"
    shutil.copytree(history, ws, symlinks=True)
    return ws


def _try(ws: Path, case: Case) -> list[str]:
    proc = run(stage_argv(case.stage, **case.make(ws)), ws, check=False, timeout=600)
    lines = [s for s in proc.stderr.splitlines() if s.startswith(f"circlefit {case.stage}: error: ")]
    if proc.returncode != 1 or "Traceback" in proc.stderr or len(lines) != 1:
        return [f"{case.id}: not one error line (exit {proc.returncode}): {proc.stderr[-800:]}"]
    problems = []
    if f"{case.file}: " not in lines[0]:
        problems.append(f"{case.id}: {case.file} not named: {lines[0]}")
    if case.fragment not in lines[0]:
        problems.append(f"{case.id}: {case.fragment!r} not said: {lines[0]}")
    return problems


def test_each_bad_input_is_refused_by_its_stage_naming_the_file(workspace: Path) -> None:
    before = _state(workspace)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([c.id for c in CASES], pool.map(lambda c: _try(workspace, c), CASES), strict=True))
    problems = [p for ps in results.values() for p in ps]
    untouched = _state(workspace) == before
    FIGURES["bad data"] = (
        f"{len(CASES)} broken inputs, {sum(not p for p in results.values())} refused with one line naming the file; "
        f"outputs untouched: {untouched}"
    )
    assert not problems, "\n".join(problems)
    assert untouched, "a stage touched an output while refusing bad input"
    assert not (workspace / "bad/pickle/PWNED").exists(), "loading the weights ran code from the file"
    assert not (workspace / "bad/obj/PWNED").exists(), "loading train.npy ran code from the file"


def test_crafted_pickles_would_fire_if_unpickled(workspace: Path, tmp_path: Path) -> None:
    """The sentinel checks above can fail: pickle.load / np.load(allow_pickle=True) on the same files create them."""
    path = tmp_path / "weights.safetensors"
    _pickle(workspace / "data/model/weights.safetensors", path)
    code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([str(BIN / "python"), "-c", code, str(path)], env=env(), check=False, timeout=600)
    assert (tmp_path / "PWNED").exists()
    (tmp_path / "bad/obj").mkdir(parents=True)
    np.save(tmp_path / "rows.npy", _pickled_rows(np.zeros((2, 3))))
    code = "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)"
    subprocess.run([str(BIN / "python"), "-c", code, "rows.npy"], cwd=tmp_path, env=env(), check=False, timeout=600)
    assert (tmp_path / "bad/obj/PWNED").exists()


def test_tampered_onnx_model_is_refused_by_the_consumer(workspace: Path, tmp_path: Path) -> None:
    """The pipeline's own model.onnx with one byte changed: `circlefit predict` checks the sidecar's sha256."""
    for name in ("model.onnx", "model.json"):
        shutil.copy(workspace / "data/export" / name, tmp_path / name)
    model = tmp_path / "model.onnx"
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    model.write_bytes(bytes(blob))
    cmd = [str(BIN / "circlefit"), "predict", "--model", str(model), "3", "4"]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"circlefit predict: error: {model}: sha256 ") and proc.stderr.count("\n") == 1
    assert "does not match model.json" in proc.stderr and "refusing to use it" in proc.stderr
