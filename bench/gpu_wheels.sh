#!/usr/bin/env bash
# Download, here, the wheels a GPU machine without internet lacks for bench/run_gpu.sh, into .whl/ (git-ignored).
#   bash bench/gpu_wheels.sh            # for the machine's CPython 3.12 on Linux x86_64
#   GPU_PYTHON=3.11 bash bench/gpu_wheels.sh
# Such a machine's python3 brings torch (CUDA), numpy, safetensors, pyyaml and pytest, but not pydantic
# (circlefit's params schema) nor ruamel.yaml (the tests' reference YAML reader). These packages and
# their dependencies come at requirements/lock.txt's versions, checked against its sha256 hashes;
# bench/run_gpu.sh installs whatever .whl/ holds, offline, before anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${GPU_PYTHON:-3.12}"
packages=(pydantic pydantic-core annotated-types typing-inspection typing-extensions ruamel-yaml)
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python

reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
for name in "${packages[@]}"; do # each pin line and its --hash lines, as the lock writes them
  awk -v name="$name" '$0 ~ "^" name "==" { on = 1 } on { print; if ($0 !~ /\\$/) exit }' requirements/lock.txt >>"$reqs"
  grep -q "^$name==" "$reqs" || {
    echo "gpu_wheels: $name is not in requirements/lock.txt" >&2
    exit 1
  }
done
rm -rf .whl
"$py" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
  --python-version "$python_version" --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl -r "$reqs"
ls -1 .whl
echo "gpu_wheels: $(du -sh .whl | cut -f1) in .whl/; carry it (device tool: carry [\".whl\"]) with the checkout"
