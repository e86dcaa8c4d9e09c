"""Fault injection for tests/test_faults.py; Python imports it at startup when this folder is on PYTHONPATH.

It does nothing unless the process was started as `python -m stages.$CIRCLEFIT_FAULT_STAGE`, so
DVC (also Python, with the same environment) runs untouched and only the stage under test is
hit. No library code knows about it. In the stage, every write to a file whose name is
$CIRCLEFIT_FAULT_FILE is counted; after $CIRCLEFIT_FAULT_BYTES bytes (characters for text) the
part written so far is flushed to disk and then, per $CIRCLEFIT_FAULT:

- `raise`: the write fails with ENOSPC, as on a full disk (the stage sees a real OSError);
- `kill`:  $CIRCLEFIT_FAULT_MARK appears (in one rename, holding this pid and the path) and the
  process waits to be SIGKILLed by the test.

safetensors writes its file from Rust; for that file its `save_file` is routed through Python's
`open` (same bytes: `safetensors.numpy.save` is the in-memory form of the same serializer).
"""

from __future__ import annotations

import builtins
import errno
import io
import itertools
import os
import sys
import time
from typing import Any

_ENV = os.environ.get
_REAL_OPEN = builtins.open


def _targeted() -> bool:
    stage = _ENV("CIRCLEFIT_FAULT_STAGE")
    argv = list(getattr(sys, "orig_argv", []))
    return bool(stage) and any(a == "-m" and b == f"stages.{stage}" for a, b in itertools.pairwise(argv))


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def fire(self, path: str) -> None:
        if _ENV("CIRCLEFIT_FAULT") == "kill":
            mark = _ENV("CIRCLEFIT_FAULT_MARK", "fault.mark")
            with _REAL_OPEN(f"{mark}.part", "w") as f:  # the mark appears whole: the test reads it once it exists
                f.write(f"{os.getpid()} {path}\n")
            os.replace(f"{mark}.part", mark)
            while True:  # the test kills the whole process group now
                time.sleep(1)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


class _CutFile:
    """A writable file that fails after the shared budget of bytes is spent."""

    def __init__(self, f: Any, path: str, budget: _Budget) -> None:
        self._f, self._path, self._budget = f, path, budget

    def write(self, data: Any) -> int:
        left = self._budget.left
        if len(data) <= left:
            self._budget.left -= len(data)
            return self._f.write(data)
        self._f.write(data[:left])
        self._f.flush()
        os.fsync(self._f.fileno())
        self._budget.left = 0
        self._budget.fire(self._path)
        raise AssertionError("unreachable")

    def __enter__(self) -> _CutFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _install() -> None:
    target = _ENV("CIRCLEFIT_FAULT_FILE", "")
    budget = _Budget(int(_ENV("CIRCLEFIT_FAULT_BYTES", "0")))

    def cut_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = _REAL_OPEN(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and os.path.basename(os.fspath(file)) == target:
            return _CutFile(f, os.fspath(file), budget)
        return f

    builtins.open = cut_open  # numpy's np.save
    io.open = cut_open  # pathlib's Path.open / write_text / write_bytes
    if target.endswith(".safetensors"):
        import safetensors.numpy as st  # circlefit.checkpoint writes every model through it

        def save_file(tensors: Any, filename: Any, metadata: Any = None) -> None:
            with cut_open(filename, "wb") as f:
                f.write(st.save(tensors, metadata=metadata))

        st.save_file = save_file


if _targeted():
    _install()
