"""Atomic writes (nothing half-written under a final name) and checked array/JSON reads."""

from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from circlefit.io import (
    DataError,
    atomic_dir,
    atomic_file,
    dumps_json,
    json_bool,
    json_number,
    load_array,
    read_json,
    save_array,
    sweep_stale,
    temp_glob,
    write_json,
)

from conftest import REPO


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_file_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.txt"
    with atomic_file(path) as tmp:
        assert tmp.name == "out.txt" and tmp.parent != path.parent  # same name, own temp dir
        tmp.write_text("one")
        assert not path.exists()
    assert path.read_text() == "one"
    assert os.listdir(path.parent) == ["out.txt"]  # the temp dir is gone


def test_atomic_file_failure_leaves_old_content_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_file_gets_the_usual_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "w.bin"
    with atomic_file(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # a writer that makes private files
        os.close(fd)
    assert _mode(path) == 0o644


def test_atomic_dir_replaces_a_whole_directory(tmp_path: Path, umask_022: None) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    (out / "stale.npy").write_text("stale")
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        assert (out / "stale.npy").exists()  # untouched until the end
    assert sorted(os.listdir(out)) == ["a.txt"]
    assert _mode(out) == 0o755  # not mkdtemp's 0700
    assert sorted(os.listdir(tmp_path)) == ["gen"]


def test_atomic_dir_failure_keeps_the_old_directory(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "partial.txt").write_text("x")
        raise RuntimeError("generator died")
    assert sorted(os.listdir(out)) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["gen"]


def test_json_is_canonical_and_refuses_nan(tmp_path: Path) -> None:
    assert dumps_json({"b": 1, "a": [1.5, 2]}) == '{\n  "a": [\n    1.5,\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not (tmp_path / "x.json").exists()
    write_json(tmp_path / "y.json", {"z": 0.1})
    assert read_json(tmp_path / "y.json") == {"z": 0.1}


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DataError, match=rf"^{bad}: not valid JSON"):
        read_json(bad)
    with pytest.raises(DataError, match=r"file not found"):
        read_json(tmp_path / "none.json")


def test_read_json_refuses_nan_and_infinity(tmp_path: Path) -> None:
    """Python's json accepts them; no file circlefit writes has them (dumps_json refuses), so they mean tampering."""
    for token in ("NaN", "Infinity", "-Infinity"):
        path = tmp_path / "stats.json"
        path.write_text(f'{{"mean": [{token}, 0.0]}}')
        with pytest.raises(DataError, match=rf"^{path}: not valid JSON: {token} is not a number JSON allows"):
            read_json(path)


def test_read_json_on_a_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path}: is a directory"):
        read_json(tmp_path)


@pytest.mark.parametrize("value", [None, "20", True, float("nan"), float("inf"), [20.0]])
def test_json_number_names_file_and_key(value: object) -> None:
    with pytest.raises(DataError, match=r"^m\.json: train_radius must be a finite number, got "):
        json_number({"train_radius": value} if value is not None else {}, "train_radius", "m.json")
    assert json_number({"r": 20}, "r", "m.json") == 20.0 and json_number({"r": 2.5}, "r", "m.json") == 2.5


def test_json_bool_names_file_and_key() -> None:
    for bad in ({}, {"held_out": 1}, {"held_out": "true"}, ["held_out"]):
        with pytest.raises(DataError, match=r"^m\.json: held_out must be true or false, got "):
            json_bool(bad, "held_out", "m.json")
    assert json_bool({"held_out": False}, "held_out", "m.json") is False


# --- what a killed writer leaves behind ------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_names_carry_the_pid_and_are_ignored_by_git_and_dvc(tmp_path: Path) -> None:
    path = tmp_path / "model" / "weights.safetensors"
    with atomic_file(path) as tmp:
        name = tmp.parent.name
        assert name.startswith(f".weights.safetensors.tmp.{os.getpid()}.")
        assert fnmatch.fnmatch(name, temp_glob("weights.safetensors")) and fnmatch.fnmatch(name, ".*.tmp.*")
        tmp.write_bytes(b"w")
    with atomic_dir(tmp_path / "generated") as tmp:
        assert tmp.name.startswith(f".generated.tmp.{os.getpid()}.")
    for ignore in (".gitignore", ".dvcignore"):
        assert ".*.tmp.*" in (REPO / ignore).read_text().splitlines(), ignore
    leftover = f"data/model/.weights.safetensors.tmp.{os.getpid()}.k3x9q2/weights.safetensors"
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", leftover], cwd=REPO, check=False)
    assert proc.returncode == 0, "git does not ignore a killed stage's temp file"


def test_a_dead_writers_temp_is_swept_by_the_next_write_a_live_ones_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    dead = tmp_path / f".out.txt.tmp.{_dead_pid()}.abcd1234"
    live = tmp_path / f".out.txt.tmp.{os.getppid()}.efgh5678"  # our parent: running
    other = tmp_path / f".other.txt.tmp.{_dead_pid()}.ijkl9012"  # another output's: not ours to sweep
    for d in (dead, live, other):
        d.mkdir()
        (d / d.name.split(".tmp.")[0].lstrip(".")).write_text("half")
    write_json(path, {"a": 1})
    assert not dead.exists() and live.exists() and other.exists()
    assert sweep_stale(tmp_path / "other.txt") == [other] and not other.exists()


def test_atomic_dir_sweeps_a_dead_writers_temp_and_old_copy(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    pid = _dead_pid()
    stale = [tmp_path / f".generated.tmp.{pid}.x1y2z3w4", tmp_path / f".generated.tmp.{pid}.old"]
    for d in stale:
        d.mkdir()
        (d / "train.npy").write_bytes(b"partial")
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(os.listdir(tmp_path)) == ["generated"]


# --- arrays ----------------------------------------------------------------------------------


def _saved(tmp_path: Path, arr: np.ndarray) -> Path:
    path = tmp_path / "a.npy"
    np.save(path, arr, allow_pickle=True)
    return path


def test_array_round_trip(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    save_array(tmp_path / "a.npy", arr[:, :])
    for mmap in (False, True):
        np.testing.assert_array_equal(load_array(tmp_path / "a.npy", 3, mmap=mmap), arr)


@pytest.mark.parametrize(
    ("arr", "fragment"),
    [
        (np.zeros((4, 3), dtype=np.float64), "dtype float32"),
        (np.zeros((4, 2), dtype=np.float32), "shape [N, 3]"),
        (np.zeros(12, dtype=np.float32), "shape [N, 3]"),
        (np.zeros((0, 3), dtype=np.float32), "empty"),
        (np.array([[0, 0, 0], [1, np.nan, 1]], dtype=np.float32), "non-finite value at row 1"),
        (np.array([[np.inf, 0, 0]], dtype=np.float32), "non-finite value at row 0"),
        (np.array([{"x": 1}], dtype=object), "not a readable .npy"),  # a pickle inside .npy
    ],
    ids=["float64", "2 columns", "1-d", "empty", "nan", "inf", "object"],
)
def test_load_array_rejects(tmp_path: Path, arr: np.ndarray, fragment: str) -> None:
    path = _saved(tmp_path, arr)
    with pytest.raises(DataError) as info:
        load_array(path, 3)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_load_array_truncated_and_missing(tmp_path: Path) -> None:
    path = _saved(tmp_path, np.zeros((100, 3), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_array(path, 3)
    with pytest.raises(DataError, match="file not found"):
        load_array(tmp_path / "none.npy", 3)
