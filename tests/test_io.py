"""Atomic writes (nothing half-written under a final name) and checked array/JSON reads."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# A writer in another process: it enters atomic_file/atomic_dir, writes, prints its temp directory
# (which exists and is locked from then on) and waits inside the block until its stdin closes.
WRITER = """
import sys
from circlefit.io import atomic_dir, atomic_file

kind, path = sys.argv[1:]
with (atomic_file if kind == "file" else atomic_dir)(path) as tmp:
    (tmp if kind == "file" else tmp / "part.txt").write_text("from the other writer")
    print(tmp.parent if kind == "file" else tmp, flush=True)
    sys.stdin.read()
"""

# Another process that holds the lock a writer holds (a shared flock on each directory given) until its stdin closes.
HOLDER = """
import fcntl, os, sys

fds = [os.open(d, os.O_RDONLY) for d in sys.argv[1:]]
for fd in fds:
    fcntl.flock(fd, fcntl.LOCK_SH)
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def _child(code: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run `code`; yield it with the first line it prints (it is ready then); on exit close its stdin and reap it."""
    cmd = [sys.executable, "-c", code, *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline().strip()
        assert line, f"the child ended before it was ready (rc {proc.wait()})"
        yield proc, line
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()  # ends a child waiting on it; a killed one is only reaped
        proc.wait(timeout=600)  # a guard against a hang: the child exits at once when its stdin closes


def _temp(parent: Path, output: str, pid: int, tag: str) -> Path:
    """A leftover temp directory of `output` named after `pid`, holding a half-written file."""
    d = parent / f".{output}.tmp.{pid}.{tag}"
    d.mkdir()
    (d / output).write_text("half")
    return d


def test_a_dead_writers_temp_is_swept_by_the_next_write_a_live_ones_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    dead = _temp(tmp_path, "out.txt", _dead_pid(), "abcd1234")
    other = _temp(tmp_path, "other.txt", _dead_pid(), "ijkl9012")  # another output's: not ours to sweep
    with _child(WRITER, "file", str(path)) as (writer, live):  # a writer of the same output, in another process
        write_json(path, {"a": 1})
        assert not dead.exists() and Path(live).is_dir() and other.exists()
        assert sweep_stale(path) == [] and Path(live).is_dir()
        assert writer.stdin is not None
        writer.stdin.close()  # let it finish: its temp was untouched, so its rename goes through
        assert writer.wait(timeout=600) == 0
    assert path.read_text() == "from the other writer" and not Path(live).exists()
    assert sweep_stale(tmp_path / "other.txt") == [other] and not other.exists()


def test_a_temp_named_after_a_live_process_but_unlocked_is_swept(tmp_path: Path) -> None:
    """Pids are reused: a killed writer's pid may belong to any live process by the time the next run looks."""
    with _child(HOLDER) as (unrelated, _):  # live, and writing nothing
        pids = {"ours": os.getpid(), "parent": os.getppid(), "unrelated": unrelated.pid}
        stale = [_temp(tmp_path, "out.txt", pid, f"{who}0000") for who, pid in pids.items()]
        assert sweep_stale(tmp_path / "out.txt") == sorted(stale)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_live_writers_temp_is_kept_whatever_pid_its_name_carries(tmp_path: Path, kind: str) -> None:
    """The lock decides, not the name: kept while another process holds it, swept once that process ended."""
    path = tmp_path / "out"
    named = [_temp(tmp_path, "out", pid, f"{who}0000") for who, pid in [("dead", _dead_pid()), ("ours", os.getpid())]]
    with _child(HOLDER, *map(str, named)) as (holder, _), _child(WRITER, kind, str(path)) as (writer, live):
        assert sweep_stale(path) == []
        # Renamed, the writer's temp carries another pid; its lock (on the directory) goes with it.
        renamed = tmp_path / f".out.tmp.{_dead_pid()}.moved000"
        os.rename(live, renamed)
        assert sweep_stale(path) == [] and renamed.is_dir() and all(d.is_dir() for d in named)
        for proc in (holder, writer):
            proc.kill()
            proc.wait(timeout=600)  # reaped: it is gone, and with it its locks
        assert sweep_stale(path) == sorted([renamed, *named])
    assert os.listdir(tmp_path) == []


def test_a_killed_writer_is_recognised_as_gone_while_still_a_zombie(tmp_path: Path) -> None:
    """A zombie answers kill(pid, 0) until it is reaped (in containers PID 1 often never reaps); its lock is gone."""
    path = tmp_path / "out.txt"
    with _child(WRITER, "file", str(path)) as (writer, live):
        writer.kill()
        os.waitid(os.P_PID, writer.pid, os.WEXITED | os.WNOWAIT)  # it has exited; WNOWAIT: not reaped, a zombie
        state = Path(f"/proc/{writer.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z"
        os.kill(writer.pid, 0)  # no ProcessLookupError: by its pid the writer looks alive
        assert Path(live).is_dir()
        write_json(path, {"a": 1})
        assert not Path(live).exists() and os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("window", ["before open", "before lock"])
def test_a_sweep_between_making_the_temp_and_locking_it_makes_the_writer_start_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """A temp is made, then locked: a concurrent sweep in between removes it, and the writer must not write there."""
    path = tmp_path / "out.txt"
    swept: list[Path] = []
    real_mkdtemp, real_open = tempfile.mkdtemp, os.open

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        made = real_mkdtemp(*args, **kwargs)
        if window == "before open" and not swept:
            swept.extend(sweep_stale(path))
        return made

    def open_(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(file, flags, *args, **kwargs)
        if window == "before lock" and not swept and flags & os.O_DIRECTORY:
            swept.append(Path(file))  # first, so that the sweep's own open passes through
            assert sweep_stale(path) == swept
        return fd

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(os, "open", open_)
    with atomic_file(path) as tmp:
        assert len(swept) == 1 and not swept[0].exists() and tmp.parent != swept[0] and tmp.parent.is_dir()
        tmp.write_text("whole")
    assert path.read_text() == "whole" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_dir_sweeps_a_dead_writers_temp_and_old_copy(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    pid = _dead_pid()
    names = ("x1y2z3w4", "x1y2z3w4.old", "old")  # a temp, its .old sibling, and the .old of earlier releases
    stale = [tmp_path / f".generated.tmp.{pid}.{tag}" for tag in names]
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
