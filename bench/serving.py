"""`mlflow models serve` for a package, on a free loopback port, ready when it answers and always stopped.

Used by bench/serve.py and tests/test_package_mlflow.py. Readiness is an event, never a duration:
the server is ready when GET /ping answers 200, and a server process that exits is reported at once
(with its log) instead of being waited for.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["MlflowServer", "free_port", "live_members", "post"]

SAFETY_S = 900.0  # a server that neither answers nor exits in this long is broken (normal: seconds)
ATTEMPTS = 3  # another process may take the free port between the probe and the server's bind


def live_members(group: int) -> list[int]:
    """Processes of process group `group` that still run. Zombies do not count: a child whose parent died
    is reaped by PID 1, which in a container may never do it, and a zombie still answers kill(pid, 0)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "PID (comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(port: int, body: bytes, content_type: str = "application/json", path: str = "/invocations") -> tuple[int, str]:
    """One POST to the server; (HTTP status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _ping(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except (ConnectionError, OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class MlflowServer:
    """`mlflow models serve -m PACKAGE --env-manager local` (the interpreter's environment), as a context manager."""

    def __init__(self, package: Path, workers: int = 1) -> None:
        self.package = package
        self.workers = workers
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="mlflow-serve-", suffix=".log")[1])

    def __enter__(self) -> MlflowServer:
        try:
            for _ in range(ATTEMPTS):
                if self._start():
                    return self
            raise RuntimeError(
                f"mlflow models serve exited before answering, {ATTEMPTS} times ({self.log}):\n{self.log_tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        if e is None:
            self.log.unlink(missing_ok=True)  # kept when something failed: its path is in the error

    def _start(self) -> bool:
        """Start on a fresh free port; True once /ping answers, False if the process exited first."""
        self.port = free_port()
        bindir = Path(sys.executable).parent  # `mlflow models serve` runs `bash -c "exec uvicorn …"`: PATH finds it
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        cmd = [str(bindir / "mlflow"), "models", "serve", "-m", str(self.package), "--env-manager", "local"]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workers)]
        with self.log.open("ab") as log:
            # its own session, so stop() reaches uvicorn and its workers too
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + SAFETY_S
        while not _ping(self.port):
            try:
                self.proc.wait(timeout=0.05)  # returns as soon as the server exits
                return False
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve neither answered nor exited:\n{self.log_tail()}")
        return True

    def stop(self) -> None:
        """SIGTERM to the server's process group (mlflow, uvicorn); SIGKILL to whatever still runs after it."""
        if self.proc is None:
            return
        group = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while live_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)  # uvicorn, reparented when mlflow exits, finishes its shutdown
        if live_members(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
