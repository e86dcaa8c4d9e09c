"""Inference: the exported ONNX model in onnxruntime vs the same model in PyTorch eager / compiled.

Usage: python bench/inference.py [--threads 1] [--compile]
Backends: `ort` (one session.run per batch, sequential, no spinning), `ort_default_opts`,
`circlefit_predict` (circlefit.runtime.predict: input checks, CHUNK_ROWS rows per call),
`torch_eager` (one forward per batch), `torch_eager_chunked` (CHUNK_ROWS rows per forward),
`torch_compile` (with --compile) all run the exported network (circlefit.model.fold_normalizer);
`torch_eager_unfolded` runs the trained CircleModel (elementwise normalizer around the network).
Needs `dvc repro` first (data/export/model.onnx, data/model/weights.safetensors). Every
backend runs in its own process (their thread pools would fight), at batch 1, 1 024 and
1 000 000; the machine's fp32 matrix-multiply FLOP/s is measured in the same run (its own
process, same thread count) so each backend's large-batch rate is also given as a fraction
of it. Writes bench/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, save, summarize

MODEL = ROOT / "data/export/model.onnx"
WEIGHTS = ROOT / "data/model/weights.safetensors"
BATCHES = (1, 1024, 1_000_000)
BUDGET_S = 1.5  # seconds of calls per batch size, shared by its repeats (each also makes >= 3 calls)


def _calls(fn: Any, x: np.ndarray, repeats: int) -> dict[str, Any]:
    fn(x)  # warm up (allocations, lazy init, compiled graphs)
    per_call = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(x)
            n += 1
            dt = time.perf_counter() - t0
            if dt >= BUDGET_S / repeats and n >= 3:
                break
        per_call.append(dt / n)
    s = summarize(per_call)
    return {
        "latency_us": {k: v * 1e6 if k != "n" else v for k, v in s.items()},
        "samples_per_s": x.shape[0] / s["median"],
    }


def child(backend: str, threads: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    inputs = {b: (rng.random((b, 2), dtype=np.float32) * 40 - 20) for b in BATCHES}
    if backend in ("ort", "ort_default_opts"):
        import onnxruntime as ort

        from circlefit.contract import INPUT_NAME

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if backend == "ort":
            # Sequential execution and no spinning threads: a 3-node MLP has no parallel
            # branches, and spin-waiting only steals the core from the caller at batch 1.
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
        fn = lambda x: sess.run(None, {INPUT_NAME: x})[0]  # noqa: E731
    elif backend == "circlefit_predict":  # what users call: input checks + CHUNK_ROWS-row calls
        from circlefit.runtime import load_session, predict

        session = load_session(MODEL, threads=threads)
        fn = lambda x: predict(session, x)  # noqa: E731
    elif backend.startswith("torch"):
        import torch

        from circlefit.model.network import fold_normalizer
        from circlefit.model.weights import load_model

        torch.set_num_threads(threads)
        trained = load_model(WEIGHTS)
        # The same network as the ONNX file (normalizer folded into the first and last layers),
        # except torch_eager_unfolded: the trained CircleModel with its elementwise normalizer.
        model = trained if backend == "torch_eager_unfolded" else fold_normalizer(trained)
        if backend == "torch_compile":
            model = torch.compile(model, dynamic=True)

        def fn(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        if backend == "torch_eager_chunked":  # the same cache blocking as circlefit_predict, for fairness
            from circlefit.runtime import CHUNK_ROWS

            whole = fn

            def fn(x: np.ndarray) -> np.ndarray:
                out = np.empty((x.shape[0], 1), dtype=np.float32)
                for s in range(0, x.shape[0], CHUNK_ROWS):
                    out[s : s + CHUNK_ROWS] = whole(x[s : s + CHUNK_ROWS])
                return out
    elif backend == "matmul":
        import torch

        torch.set_num_threads(threads)
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        r = _calls(lambda _: torch.mm(a, b), inputs[1], repeats)
        return {"flops_per_s": 2 * 1024**3 * r["samples_per_s"]}
    else:
        raise SystemExit(f"unknown backend {backend}")
    return {str(b): _calls(fn, inputs[b], repeats) for b in BATCHES}


def model_flops_per_sample() -> int:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(MODEL))
    mats = [numpy_helper.to_array(t) for t in proto.graph.initializer if len(t.dims) == 2]
    return sum(2 * int(np.prod(m.shape)) for m in mats)  # multiply-adds of each Gemm/MatMul


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, help="default: bench/results/inference.json")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.repeats)))
        return
    if not MODEL.is_file():
        raise SystemExit(f"{MODEL}: not found; run `dvc repro` first")
    backends = ["matmul", "ort", "ort_default_opts", "circlefit_predict", "torch_eager", "torch_eager_chunked"]
    backends += ["torch_eager_unfolded"]
    backends += ["torch_compile"] if args.compile else []
    results: dict[str, Any] = {}
    for backend in backends:
        cmd = [sys.executable, str(Path(__file__)), "--child", backend, "--threads", str(args.threads),
               "--repeats", str(args.repeats)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        results[backend] = json.loads(out.strip().splitlines()[-1])
        print(backend, results[backend], flush=True)
    flops = model_flops_per_sample()
    peak = results.pop("matmul")["flops_per_s"]
    big = str(BATCHES[-1])
    summary = {
        "matmul_flops_per_s": peak,
        "model_flops_per_sample": flops,
        "fraction_of_matmul_at_1M": {b: r[big]["samples_per_s"] * flops / peak for b, r in results.items()},
        "ort_batch1_latency_us": results["ort"]["1"]["latency_us"]["median"],
        "ort_over_torch_eager_at_1M": results["ort"][big]["samples_per_s"]
        / results["torch_eager"][big]["samples_per_s"],
        "circlefit_predict_over_torch_eager_at_1M": results["circlefit_predict"][big]["samples_per_s"]
        / results["torch_eager"][big]["samples_per_s"],
        "circlefit_predict_over_torch_eager_chunked_at_1M": results["circlefit_predict"][big]["samples_per_s"]
        / results["torch_eager_chunked"][big]["samples_per_s"],
        "ort_over_torch_eager_batch1": results["torch_eager"]["1"]["latency_us"]["median"]
        / results["ort"]["1"]["latency_us"]["median"],
    }
    print(summary)
    print(save("inference", {"threads": args.threads, "backends": results, "summary": summary}, args.out))


if __name__ == "__main__":
    main()
