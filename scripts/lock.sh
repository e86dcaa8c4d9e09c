#!/usr/bin/env bash
# Refresh the lock files (needs the network; ~1 min):   bash scripts/lock.sh
# Bump every package to the newest allowed release:      bash scripts/lock.sh --upgrade
# Bump one package:                                       bash scripts/lock.sh --upgrade-package onnx
#
# requirements/lock.txt       pyproject.toml's dependencies and all its extras, every package at an
#                             exact version with the sha256 of each of its files; torch is the CPU
#                             build named in requirements/torch-cpu.in.
# requirements/lock-cuda.txt  torch's CUDA build (requirements/torch-cuda.in, the same release from
#                             PyPI) with the nvidia-* and triton packages it pulls; everything it
#                             shares with lock.txt is pinned to lock.txt's version.
# scripts/install.sh installs from them; tests/test_lock.py checks they agree with pyproject.toml.
# Resolved for CPython 3.11 on Linux x86_64 (manylinux_2_28), whatever machine runs this.
# Tool: uv (pinned below) in ./.venv-lock; existing pins are kept unless --upgrade asks otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
uv_version=0.13.9
tools=.venv-lock
[ -x "$tools/bin/uv" ] && [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" = "$uv_version" ] || {
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
}
uv=("$tools/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11
  --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/lock.sh")
# The CPU torch build is not on PyPI: take it from pip's find-links (this project's machines keep
# it there) or from PIP_FIND_LINKS / CIRCLEFIT_LOCK_FIND_LINKS pointing at a folder or page with it.
links="${CIRCLEFIT_LOCK_FIND_LINKS:-${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}}"
find_links=()
for l in $links; do find_links+=(--find-links "$l"); done

"${uv[@]}" pyproject.toml --all-extras -c requirements/torch-cpu.in ${find_links[@]+"${find_links[@]}"} \
  -o requirements/lock.txt "$@"

# The CUDA torch: PyPI only (no find-links, so the +cpu file cannot win), every shared package
# held at lock.txt's version.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -E '^[A-Za-z0-9]' requirements/lock.txt | sed 's/ .*//' | grep -v '^torch==' >"$tmp/pins.txt"
"${uv[@]}" requirements/torch-cuda.in -c "$tmp/pins.txt" -o requirements/lock-cuda.txt "$@"
sed -i "s|-c $tmp/pins.txt|-c requirements/lock.txt|" requirements/lock-cuda.txt

# No index or host names in the repo: the locks carry versions and hashes only.
if grep -nE '://|^--(index-url|extra-index-url|find-links|trusted-host)' requirements/lock.txt requirements/lock-cuda.txt; then
  echo "lock.sh: a lock file names an index or host (above); remove it" >&2
  exit 1
fi
echo "lock.sh: wrote requirements/lock.txt ($(grep -cE '^[A-Za-z0-9]' requirements/lock.txt) packages)" \
  "and requirements/lock-cuda.txt ($(grep -cE '^[A-Za-z0-9]' requirements/lock-cuda.txt))"
