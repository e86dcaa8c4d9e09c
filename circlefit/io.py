"""Atomic writes and checked reads: no half-written file ever sits under a final name."""

from __future__ import annotations

import contextlib
import csv
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_glob(name: str) -> str:
    """The glob of the temp siblings `atomic_file`/`atomic_dir` make for an output called `name`."""
    return f".{glob.escape(name)}.tmp.*"


def _temp_prefix(path: Path) -> str:
    # The writer's pid is in the name, so a later run can tell a dead writer's leftovers from a live one's.
    return f".{path.name}.tmp.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove temp siblings of `path` whose writer no longer runs (killed mid-write); returns them.

    SIGKILL or a power cut skips every cleanup, so `.NAME.tmp.PID.*` can be left beside an
    output. They never sit under a final name, git ignores them, and the next write of the
    same output removes them here. A live writer's temp (its pid still runs) is left alone.
    """
    path = Path(path)
    removed = []
    for stale in sorted(path.parent.glob(temp_glob(path.name))):
        pid = stale.name[len(f".{path.name}.tmp.") :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


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
    tmpdir = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    try:
        tmp = tmpdir / path.name
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would: some writers (safetensors) make 0600
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty directory to fill; on success it replaces directory `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    prefix = _temp_prefix(path)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    old = path.parent / f"{prefix}old"
    try:
        yield tmp
        for child in tmp.iterdir():
            with open(child, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700; a final directory gets the usual mode
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
