#!/usr/bin/env bash
# Install circlefit with its dev extra into ./.venv (CPU torch) and run the test suite.
# Extra pytest arguments pass through: scripts/test.sh -k config
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
exec .venv/bin/python -m pytest "$@"
