#!/usr/bin/env bash
# One command for a CUDA machine (H100/H200): the CUDA tests, then the GPU training benchmark.
# Logs and results go to $OUT (default bench/results): gpu_env.txt, test_cuda.log,
# gpu_train.log, gpu_train.json, gpu_train.md. Needs a CUDA torch plus numpy, safetensors,
# pyyaml, pytest and ruamel.yaml importable; wheels found in ./.whl are installed first (some
# GPU images lack ruamel.yaml, see BENCHMARKS.md). Extra arguments go to bench/gpu_train.py.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
py="${PYTHON:-python3}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/circlefit-site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/circlefit-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  nvidia-smi || true
  "$py" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
    "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
} 2>&1 | tee "$out/gpu_env.txt"
timeout 300 "$py" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
tests=${PIPESTATUS[0]}
"$py" bench/gpu_train.py --out "$out/gpu_train.json" "$@" 2>&1 | tee "$out/gpu_train.log"
bench=${PIPESTATUS[0]}
echo "run_gpu: tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
