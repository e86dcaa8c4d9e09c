"""Atomic writes and checked reads: no half-written file ever sits under a final name."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import glob
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from circlefit.errors import DataError

__all__ = [
    "DataError",
    "atomic_dir",
    "atomic_file",
    "dumps_json",
    "json_bool",
    "json_number",
    "load_array",
    "read_json",
    "save_array",
    "sweep_stale",
    "temp_dir",
    "temp_glob",
    "write_json",
    "write_table",
]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_glob(name: str) -> str:
    """The glob of the temp siblings `atomic_file`/`atomic_dir` make for an output called `name`."""
    return f".{glob.escape(name)}.tmp.*"


def _temp_prefix(path: Path) -> str:
    # The pid in the name says who wrote it, for a human reading `ls -a`; whether that writer still
    # runs is decided by its lock (see sweep_stale), never by the pid, which may be reused.
    return f".{path.name}.tmp.{os.getpid()}."


# flock(2) errors that mean "this filesystem has no flock"; there, sweep_stale cannot lock either and keeps every temp.
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _new_temp_dir(path: Path, suffix: str = "") -> tuple[Path, int]:
    """A new empty directory `.NAME.tmp.PID.XXXXXXXX` beside `path`, and an fd holding its lock.

    The lock is an flock on an fd opened on the directory itself (O_CLOEXEC: programs the writer
    starts don't inherit it); it lasts until the fd closes, at the latest when the process ends.
    It is a shared lock: enough to stop a sweep's exclusive one, and NFS (which emulates flock
    with byte-range locks) grants it on a read-only fd, as a directory's must be.
    mkdtemp and the lock are two steps: a sweep can find the directory between them, lock it and
    remove it. Then the name no longer leads to the inode we locked, and we make another. Once
    the lock is ours and the name still leads to it, no sweep touches it.
    """
    while True:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent))
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:  # swept before we could open it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a sweep that took it first removes it
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                os.close(fd)
                raise
        try:
            if os.path.samestat(os.lstat(tmp), os.fstat(fd)):
                return tmp, fd
        except FileNotFoundError:  # swept after we opened it
            pass
        os.close(fd)


def _lock_if_free(entry: Path) -> int | None:
    """An fd holding `entry`'s lock if no other process held it (its writer is gone), else None."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # gone already, or not ours to open (another user's): cannot tell, so leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # held (EWOULDBLOCK): its writer runs; or no flock here (or NFS's EBADF): cannot tell
    return fd


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove temp siblings of `path` whose writer no longer runs (killed mid-write); returns them.

    SIGKILL or a power cut skips every cleanup, so `.NAME.tmp.PID.*` can be left beside an
    output. They never sit under a final name, git ignores them, and the next write of the
    same output removes them here. A writer holds a (shared) flock on its temp directory while
    it writes; the kernel drops it when the writer's files close as it exits, before it is even a
    zombie. So a temp whose lock we can take has no writer, whichever process has the pid in its
    name now (pids are reused); a locked one is left alone.
    """
    path = Path(path)
    removed = []
    for stale in sorted(path.parent.glob(temp_glob(path.name))):
        fd = _lock_if_free(stale)
        if fd is None:
            continue
        try:  # removed while locked, so a writer that made it a moment ago sees it go (_new_temp_dir)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        finally:
            os.close(fd)
        removed.append(stale)
    return removed


@contextlib.contextmanager
def temp_dir(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a new empty directory beside `path`, `.NAME.tmp.PID.XXXXXXXX{suffix}`; removed on exit.

    It is locked while the block runs: `sweep_stale(path)` leaves it alone until then, and
    removes it if this process is killed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _new_temp_dir(path, suffix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # then unlock: a live writer's temp is never unlocked
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a path to write; on success it replaces `path` in one rename.

    The temp file lives in its own temp directory *under the final name*, so a writer that
    records the name it writes to (zip-based formats name their root folder after the file)
    still produces the bytes it would at the final path: hashes in dvc.lock stay put.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    with temp_dir(path) as tmpdir:
        tmp = tmpdir / path.name
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would: some writers (safetensors) make 0600
        os.replace(tmp, path)
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty directory to fill (subdirectories too); on success it replaces directory `path`.

    Every file and directory in it is fsynced before the rename. The yielded temp directory
    becomes the output itself, so the writer's lock is on the directory (see temp_dir), never a
    file inside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    with temp_dir(path) as tmp:
        # The old output waits here between the two renames. It is not locked: a sweep that removes
        # it then takes nothing this writer still needs; after a kill, the next write sweeps it.
        old = path.parent / f"{tmp.name}.old"
        try:
            yield tmp
            for child in sorted(tmp.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
                if child.is_dir():
                    _fsync_dir(child)
                else:
                    _fsync_file(child)
            _fsync_dir(tmp)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700; a final directory gets the usual mode
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            shutil.rmtree(old, ignore_errors=True)


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, fixed indent, trailing newline (stable bytes for DVC)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(dumps_json(obj), encoding="utf-8")


def write_table(path: str | Path, rows: list[dict[str, Any]], delimiter: str = ",") -> None:
    """Rows as CSV (TSV with delimiter "\t"), the header from the first row's keys, `\n` line ends."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; NaN and Infinity (which Python's json would accept) are refused like other bad JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise DataError(f"{path}: not valid JSON: {e}") from None


def json_number(obj: Any, key: str, source: str | Path) -> float:
    """`obj[key]` as a finite float, or a DataError naming the file and the key."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{source}: {key} must be a finite number, got {value!r}")
    return float(value)


def json_bool(obj: Any, key: str, source: str | Path) -> bool:
    """`obj[key]` as a bool, or a DataError naming the file and the key."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, bool):
        raise DataError(f"{source}: {key} must be true or false, got {value!r}")
    return value


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write a .npy file (the caller writes into an atomic_dir or atomic_file)."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def load_array(path: str | Path, columns: int, mmap: bool = False) -> np.ndarray:
    """Load a float32 [N, columns] .npy array, checking dtype, shape and finiteness."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: {_unreadable(path, e)}") from None
    if arr.dtype != np.float32:
        raise DataError(f"{path}: expected dtype float32, got {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != columns:
        raise DataError(f"{path}: expected shape [N, {columns}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: array is empty (0 rows)")
    bad = _first_nonfinite(arr)
    if bad is not None:
        raise DataError(f"{path}: non-finite value at row {bad}: {arr[bad].tolist()}")
    return arr


def _unreadable(path: Path, e: BaseException) -> str:
    # numpy's own words for the pickle cases would suggest loading the file unsafely (read or mapped)
    if "pickle" not in str(e) and "Python objects" not in str(e):
        return f"not a readable .npy array (truncated or corrupt?): {e}"
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            return "not a readable .npy array: it holds pickled Python objects; refusing to load it"
    return "not a .npy file (no .npy header); refusing to unpickle it"


def _first_nonfinite(arr: np.ndarray, chunk: int = 1 << 20) -> int | None:
    for start in range(0, arr.shape[0], chunk):
        block = np.asarray(arr[start : start + chunk])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None
