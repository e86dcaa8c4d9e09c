#!/usr/bin/env bash
# Create ./.venv and install circlefit into it from the lock: every package at the exact version and
# sha256 of requirements/lock.txt (refresh: bash scripts/lock.sh). Extras as arguments:
#   bash scripts/install.sh                  base (CPU torch 2.13.0+cpu)
#   bash scripts/install.sh dev runtimes     + pytest/ruff/mypy/gto/tritonclient and openvino/tract
#   bash scripts/install.sh bench            + matplotlib
#   bash scripts/install.sh serve            + mlflow-skinny, pandas, uvicorn, fastapi (circlefit package mlflow)
#   bash scripts/install.sh dev runtimes serve   what CI installs (scripts/test.sh)
# CIRCLEFIT_TORCH=cuda: torch's CUDA build and its nvidia-* packages, locked in requirements/lock-cuda.txt.
# CIRCLEFIT_TORCH=<spec> (e.g. 'torch==2.14.1'): that torch, unlocked; the rest still from the lock.
# CIRCLEFIT_UNLOCKED=1: pyproject.toml's ranges, no lock (another Python or platform than the lock's).
set -euo pipefail
cd "$(dirname "$0")/.."
torch="${CIRCLEFIT_TORCH:-cpu}"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [ "${CIRCLEFIT_UNLOCKED:-0}" = 1 ]; then
  extras=$(IFS=,; echo "$*")
  case "$torch" in cpu) spec="torch==2.13.0" ;; cuda) spec="torch>=2.6,<2.15" ;; *) spec="$torch" ;; esac
  rm -f .venv/circlefit-locked.txt # no lock selection to check (tests/test_lock.py skips)
  "${pip[@]}" "$spec" -e ".${extras:+[$extras]}"
  exit 0
fi

case "$torch" in cpu | cuda) flavour="$torch" ;; *) flavour=none ;; esac
reqs=.venv/circlefit-locked.txt
.venv/bin/python scripts/locked.py --torch "$flavour" "$@" >"$reqs"
# Hash-checked, and --no-deps: the selection is already the whole closure, so pip adds nothing.
"${pip[@]}" --require-hashes --no-deps -r "$reqs"
[ "$flavour" != none ] || "${pip[@]}" "$torch"
# The project itself has no hash: editable, no deps, built with the locked setuptools.
"${pip[@]}" --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check --disable-pip-version-check >/dev/null || {
  .venv/bin/python -m pip check --disable-pip-version-check >&2
  exit 1
}
