#!/usr/bin/env bash
# Create ./.venv and install circlefit into it. `install.sh dev` adds the test/lint extra and the
# runtimes extra (OpenVINO, tract: consumers the tests run the exported model in).
# CPU by default (torch 2.13.0 CPU build); CIRCLEFIT_TORCH=cuda keeps pip's default torch,
# which on Linux x86_64 is a CUDA build; CIRCLEFIT_TORCH=<spec> installs that spec instead.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "dev" ] && extra="[dev,runtimes]"  # runtimes: OpenVINO and tract, for tests/test_runtimes.py
case "${CIRCLEFIT_TORCH:-cpu}" in
  cpu) torch_spec="torch==2.13.0" ;;
  cuda) torch_spec="torch>=2.6,<2.15" ;;
  *) torch_spec="$CIRCLEFIT_TORCH" ;;
esac
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$torch_spec" -e ".$extra"
