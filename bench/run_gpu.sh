#!/usr/bin/env bash
# One command for a CUDA machine (an H100 or H200 with 16 cores; no internet needed), well inside 10 minutes:
#   (a) the CUDA tests: tests/test_cuda.py and the lstsq device tests of tests/test_lstsq.py;
#   (b) bench/gpu_lstsq.py: lstsq at n = 10⁶ and 10⁷ on CUDA against the CPU (every core) in the same
#       run, the weights' sha256 and the loss curves compared, bench/results/gpu_lstsq.json naming the GPU;
#   (c) optionally, GPU_TRAIN=quick|full: the gradient method's GPU benchmark, bench/gpu_train.py.
#
#   bash bench/gpu_wheels.sh         # here, once: the wheels such a machine lacks (pydantic, ruamel.yaml), to .whl/
#   bash bench/run_gpu.sh            # there, with .whl/ beside the checkout (device tool: carry [".whl"])
#   QUICK=1 bash bench/run_gpu.sh    # anywhere, in a minute: small n; without a GPU the CUDA parts skip
#
# Logs and results go to $OUT (default bench/results): gpu_env.txt, test_cuda.log, gpu_lstsq.log,
# gpu_lstsq.json (and gpu_train.log, .json, .md). PYTHON: the interpreter (default python3). Extra
# arguments go to bench/gpu_lstsq.py. Exit status 0 only if every part passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
py="${PYTHON:-python3}"
quick="${QUICK:-0}"
start=$SECONDS
mkdir -p "$out"
# Offline: what bench/gpu_wheels.sh downloaded, where the interpreter lacks it (a venv with the dev extra has it all).
if ! "$py" -c 'import pydantic, ruamel.yaml' 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/circlefit-site"
  "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CIRCLEFIT_LOG=WARNING
"$py" -c 'import pydantic, ruamel.yaml' || {
  echo "run_gpu: $py lacks pydantic or ruamel.yaml; run bash bench/gpu_wheels.sh where pip works and bring .whl/" >&2
  exit 1
}
{
  nvidia-smi || true
  echo "cores: $(nproc)"
  "$py" -c 'import sys, torch, numpy, pydantic
print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "numpy", numpy.__version__,
      "pydantic", pydantic.VERSION, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
} 2>&1 | tee "$out/gpu_env.txt"

# (a) Every test of test_cuda.py (its file name matches "cuda"), and test_lstsq.py's device tests (the
# torch path on the CPU and on CUDA against numpy, bit for bit). Without a GPU the CUDA ones skip.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout 240 "$py" -m pytest -q -p no:cacheprovider \
  tests/test_cuda.py tests/test_lstsq.py -k "cuda or device" 2>&1 | tee "$out/test_cuda.log"
tests=${PIPESTATUS[0]}

# (b) What is left of ~8.5 minutes goes to the lstsq benchmark: it skips a run it projects past that.
budget=$((510 - (SECONDS - start)))
[ "$budget" -ge 120 ] || budget=120
sizes=()
[ "$quick" = 1 ] && sizes=(--sizes 20000 100000)
"$py" bench/gpu_lstsq.py "${sizes[@]}" --budget-s "$budget" --out "$out/gpu_lstsq.json" "$@" 2>&1 |
  tee "$out/gpu_lstsq.log"
bench=${PIPESTATUS[0]}

# (c) The gradient method on the GPU (eager vs CUDA graph, precisions): quick is a minute, full many more.
train=0
case "${GPU_TRAIN:-0}" in
0) ;;
quick | full)
  [ "$GPU_TRAIN" = quick ] && args=(--quick) || args=()
  "$py" bench/gpu_train.py --device auto "${args[@]}" --out "$out/gpu_train.json" 2>&1 | tee "$out/gpu_train.log"
  train=${PIPESTATUS[0]}
  ;;
*) echo "run_gpu: GPU_TRAIN must be 0, quick or full, got '$GPU_TRAIN'" >&2 && train=2 ;;
esac

echo "run_gpu: tests exit $tests, gpu_lstsq exit $bench, gpu_train exit $train; $((SECONDS - start)) s"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ] && [ "$train" -eq 0 ]
