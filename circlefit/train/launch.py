"""Relaunch a stage under torchrun, one process per rank; its outputs appear only if every rank succeeded.

The stage's command stays what dvc.yaml says. With `train.distributed.enabled`, the stage
process becomes a launcher: it runs `python -m torch.distributed.run` (torchrun) on the same
module with the output paths pointed into a staging directory, waits, and only when torchrun
exits 0 (every rank of every node finished) moves rank 0's files to their final names, the
model last. A rank that dies makes torchrun stop the others and exit non-zero: the staging
directory is removed and no output exists under a final name.

Single machine: torchrun's `--standalone` rendezvous on a free localhost port. Several machines:
torchrun's own `PET_*` environment variables (PET_NNODES, PET_NODE_RANK, PET_RDZV_ENDPOINT, …)
configure the rendezvous (static: node ranks are given). Global rank 0 runs on node rank 0, so
the outputs appear there; the stage on any other node finishes with none.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from circlefit.errors import DistributedError
from circlefit.io import atomic_file, temp_dir

__all__ = ["DistributedError", "run_ranks", "torchrun_command", "under_torchrun"]

log = logging.getLogger(__name__)

# torchrun reads any of its options from PET_<OPTION>; these mean the user set up a rendezvous.
RENDEZVOUS_ENV = ("PET_NNODES", "PET_NODE_RANK", "PET_RDZV_BACKEND", "PET_RDZV_ENDPOINT", "PET_MASTER_ADDR")


def under_torchrun() -> bool:
    """True in a process that torchrun started as one of its ranks."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def torchrun_command(module: str, args: list[str], nproc: int, env: dict[str, str]) -> list[str]:
    """`python -m torch.distributed.run … -m module args`, standalone unless `env` sets a rendezvous."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if not any(k in env for k in RENDEZVOUS_ENV):
        cmd.append("--standalone")  # one machine: a private rendezvous on a free localhost port
    return [*cmd, "-m", module, *args]


def run_ranks(module: str, inputs: list[str], outputs: dict[str, str], nproc: int, threads: int) -> None:
    """Run `module inputs --flag staged…` under torchrun; publish `outputs` (flag → path, in order) on success.

    Each rank gets `threads` CPU threads (OMP_NUM_THREADS). Raises DistributedError, with no
    output under a final name, when any rank fails, or when this is node rank 0 (PET_NODE_RANK
    unset or 0) and global rank 0 wrote nothing here.
    """
    # Staged beside the first output as a temp sibling (circlefit.io): git-ignored, and if this
    # launcher is killed, swept by the next write of that output.
    with temp_dir(next(iter(outputs.values())), suffix=".ranks") as staging:
        staged = {flag: staging / str(i) / Path(path).name for i, (flag, path) in enumerate(outputs.items())}
        args = [*inputs, *(a for flag, path in staged.items() for a in (flag, str(path)))]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = torchrun_command(module, args, nproc, env)
        log.info("launching %d rank(s) on this machine: %s", nproc, shlex.join(cmd))
        rc = _wait(subprocess.Popen(cmd, env=env))
        if rc != 0:
            raise DistributedError(
                f"torchrun exited with status {rc}: a rank failed or was stopped (see its error above); "
                "no outputs were written"
            )
        if env.get("PET_NODE_RANK", "0") != "0":
            log.info("every rank finished; node rank %s writes nothing (node rank 0 does)", env["PET_NODE_RANK"])
            return
        missing = [str(p) for p in staged.values() if not p.is_file()]
        if missing:
            raise DistributedError(
                "every rank finished, but global rank 0 did not run on this machine, so its outputs are "
                f"elsewhere ({', '.join(missing)} missing); launch node rank 0 here (PET_NODE_RANK=0)"
            )
        for flag, path in outputs.items():  # in the caller's order: the model last
            with atomic_file(path) as tmp:
                shutil.move(staged[flag], tmp)


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for torchrun; a SIGTERM or Ctrl-C here is passed on, so it stops its ranks before we exit."""

    def forward(signum: int, frame: FrameType | None) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
