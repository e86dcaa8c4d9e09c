#!/usr/bin/env bash
# Install circlefit from the lock with its dev, runtimes and serve extras into ./.venv (CPU torch), run the tests.
# Extra pytest arguments pass through: scripts/test.sh -k config
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev runtimes serve
# Offline copies of the vega builds dvc's plot HTML loads, for the headless-browser plot test.
if command -v npm >/dev/null; then .venv/bin/python tests/browser/fetch_vega.py; fi
exec .venv/bin/python -m pytest "$@"
