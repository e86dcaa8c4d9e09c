"""Export variants of the trained model in onnxruntime: accuracy and speed, side by side.

Usage: python bench/export_variants.py [--threads 1] [--repeats 5]
Needs `dvc repro` first. Variants, all from data/model/weights.safetensors:
  folded    what circlefit ships: the normalizer folded into the first and last Gemm
  unfolded  the normalizer as elementwise Sub/Div before and Mul/Add after the network
  int8      onnxruntime.quantization.quantize_dynamic(folded), int8 weights (QInt8)
For each: test-split RMSE, max |diff| vs the shipped file, batch-1 latency, and 1M-row throughput
in one call and in circlefit.runtime's CHUNK_ROWS-row calls. One process, variants interleaved
round by round (the first round dropped), `--threads` intra-op threads. Writes bench/results/export_variants.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from common import ROOT, save, summarize
from onnxruntime.quantization import QuantType, quantize_dynamic

from circlefit.contract import INPUT_NAME, OUTPUT_NAME
from circlefit.model.network import CircleModel
from circlefit.model.weights import load_model
from circlefit.runtime import CHUNK_ROWS, load_session

WEIGHTS = ROOT / "data/model/weights.safetensors"
TEST = ROOT / "data/generated/test.npy"
SHIPPED = ROOT / "data/export/model.onnx"


def unfolded(model: CircleModel) -> bytes:
    """The model with its normalizer as elementwise ops around the network (what folding removes)."""
    program = torch.onnx.export(
        model.eval(), (torch.zeros(8, 2),), dynamo=True, external_data=False, opset_version=18,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )  # fmt: skip
    assert program is not None
    return program.model_proto.SerializeToString()


def _per_call(fn: Any, budget_s: float) -> float:
    """Seconds per call, calling for about budget_s (at least twice)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if (dt := time.perf_counter() - t0) >= budget_s and n >= 2:
            return dt / n


def measure(paths: dict[str, Path], threads: int, repeats: int, test: np.ndarray) -> dict[str, Any]:
    """Every metric, variants interleaved round by round so drift in the machine hits all alike."""
    sessions = {name: load_session(path, threads) for name, path in paths.items()}
    shipped = sessions["folded"].run(None, {INPUT_NAME: test[:, :2]})[0][:, 0]
    big = np.random.default_rng(0).uniform(-20, 20, (1_000_000, 2)).astype(np.float32)
    one = big[:1]

    def chunked(sess: ort.InferenceSession) -> None:
        out = np.empty((big.shape[0], 1), np.float32)
        for s in range(0, big.shape[0], CHUNK_ROWS):
            out[s : s + CHUNK_ROWS] = sess.run(None, {INPUT_NAME: big[s : s + CHUNK_ROWS]})[0]

    samples: dict[str, dict[str, list[float]]] = {n: {"b1": [], "whole": [], "chunked": []} for n in sessions}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, sess in sessions.items():
            samples[name]["b1"].append(_per_call(lambda: sess.run(None, {INPUT_NAME: one}), 0.2))  # noqa: B023
            samples[name]["whole"].append(_per_call(lambda: sess.run(None, {INPUT_NAME: big}), 0.5))  # noqa: B023
            samples[name]["chunked"].append(_per_call(lambda: chunked(sess), 0.5))  # noqa: B023
    results = {}
    for name, sess in sessions.items():
        pred = sess.run(None, {INPUT_NAME: test[:, :2]})[0][:, 0]
        s = {k: v[1:] for k, v in samples[name].items()}
        results[name] = {
            "test_rmse": float(np.sqrt(np.mean((pred.astype(np.float64) - test[:, 2]) ** 2))),
            "max_abs_diff_vs_shipped": float(np.abs(pred - shipped).max()),
            "ops": sorted({n.op_type for n in onnx.load(str(paths[name])).graph.node}),
            "batch1_latency_us": {k: v * 1e6 if k != "n" else v for k, v in summarize(s["b1"]).items()},
            "samples_per_s_1M_one_call": 1e6 / summarize(s["whole"])["median"],
            "samples_per_s_1M_chunked": 1e6 / summarize(s["chunked"])["median"],
        }
        print(name, results[name], flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, help="default: bench/results/export_variants.json")
    args = ap.parse_args()
    if not SHIPPED.is_file():
        raise SystemExit(f"{SHIPPED}: not found; run `dvc repro` first")
    test = np.load(TEST)
    model = load_model(WEIGHTS)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"folded": SHIPPED, "unfolded": Path(tmp) / "unfolded.onnx", "int8": Path(tmp) / "int8.onnx"}
        paths["unfolded"].write_bytes(unfolded(model))
        quantize_dynamic(str(SHIPPED), str(paths["int8"]), weight_type=QuantType.QInt8)
        results = measure(paths, args.threads, args.repeats, test)
    base = results["folded"]
    ratios = {
        name: {
            "rmse_over_folded": r["test_rmse"] / base["test_rmse"],
            "batch1_latency_over_folded": r["batch1_latency_us"]["median"] / base["batch1_latency_us"]["median"],
            "chunked_throughput_over_folded": r["samples_per_s_1M_chunked"] / base["samples_per_s_1M_chunked"],
        }
        for name, r in results.items()
    }
    print(ratios)
    print(save("export_variants", {"threads": args.threads, "variants": results, "ratios": ratios}, args.out))


if __name__ == "__main__":
    main()
