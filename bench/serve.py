"""Serving: the model's MLflow package through `mlflow models serve`, against two yardsticks in the same run.

Usage: python bench/serve.py [--model data/export/model.onnx] [--rounds 7] [--out FILE]
Needs the serve extra and `dvc repro` first. Writes bench/results/serve.json (or --out).

Servers, each `circlefit package mlflow` then `mlflow models serve --env-manager local -w 1`:
  model                   the exported model, as packaged (one onnxruntime thread)
  floor                   a one-op graph with the model's inputs and outputs (Slice: xy[:, :1], float32
                          [N, 2] -> [N, 1]), with its own sidecar and probes, packaged and served the same
                          way: what MLflow's request path costs with (almost) no model in it
  model_default_threads   the model packaged with --threads 0 (onnxruntime's default pool)
and in-process onnxruntime on each graph (circlefit.runtime.load_session, one thread, a process of its
own so thread pools do not fight).

Client: stdlib http.client, one keep-alive connection per server, JSON bodies serialized beforehand
({"inputs": [[x, y], ...]}). Requests alternate between the servers one by one, in a new shuffled
order each time, so every server sees the same background load. Per round: batch 1 (latency p50, p99)
and batch 4096 (median time, rows/s). Reported: each figure's median over rounds, and each ratio as
the median over rounds of the ratio within a round (the paired figures saw the same load).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, save
from serving import MlflowServer

MODEL = ROOT / "data/export/model.onnx"
BIG = 4096
CHILD_CALLS = {1: (2000, 200), BIG: (200, 20)}  # in-process: (timed calls, warm-up calls) per batch size


def floor_bundle(model: Path, out: Path) -> Path:
    """A Slice graph with the model's I/O, written as a circlefit export: model.onnx, its sidecar and probes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from circlefit.contract import sha256_hex, sidecar_path
    from circlefit.export.sidecar import ParityRecord, ProbesRef, build_sidecar, describe_io, probes_json
    from circlefit.io import dumps_json
    from circlefit.verify import verify

    source = onnx.load(str(model))
    io = describe_io(source)
    (inp,), (outp,) = io["inputs"], io["outputs"]
    starts = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", [0]), ("e", [1]), ("a", [1]))]
    graph = helper.make_graph(
        [helper.make_node("Slice", [inp["name"], "s", "e", "a"], [outp["name"]])],
        "floor",
        [helper.make_tensor_value_info(inp["name"], TensorProto.FLOAT, inp["shape"])],
        [helper.make_tensor_value_info(outp["name"], TensorProto.FLOAT, outp["shape"])],
        initializer=starts,
    )
    opset = {o.domain: o.version for o in source.opset_import}[""]
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=source.ir_version)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    probes = verify(model).probes
    tol = probes.tolerance
    expected = probes.xy[:, 0].astype(np.float64)  # what the Slice returns, exactly
    floor = probes_json(probes.xy, expected, tol, sha256_hex(data))
    out.mkdir(parents=True)
    path = out / "model.onnx"
    path.write_bytes(data)
    (out / "probes.json").write_text(dumps_json(floor))
    ref = ProbesRef("probes.json", len(expected), sha256_hex((out / "probes.json").read_bytes()))
    record = ParityRecord(
        {"expected": "xy[:, 0]", "tolerance": tol.to_json(), "runtimes": {}}, {"probes": len(expected)}
    )
    sidecar_path(path).write_text(dumps_json(build_sidecar(proto, data, None, record, ref)))
    verify(path)
    return path


def bodies(batch: int, n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        json.dumps({"inputs": rng.uniform(-20, 20, size=(batch, 2)).astype(np.float32).tolist()}).encode()
        for _ in range(n)
    ]


def paired(ports: dict[str, int], payloads: list[bytes], warmup: int, seed: int) -> dict[str, list[float]]:
    """Each payload to every server, in a new shuffled order per payload; seconds per request, per server."""
    order = random.Random(seed)
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=300) for name, port in ports.items()}
    headers = {"Content-Type": "application/json"}
    times: dict[str, list[float]] = {name: [] for name in ports}
    try:
        warm = [payloads[i % len(payloads)] for i in range(warmup)]
        for i, body in enumerate(warm + payloads):
            names = list(conns)
            order.shuffle(names)
            for name in names:
                t0 = time.perf_counter()
                conns[name].request("POST", "/invocations", body=body, headers=headers)
                response = conns[name].getresponse()
                answer = response.read()
                dt = time.perf_counter() - t0
                if response.status != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status}: {answer[:300]!r}")
                if i >= warmup:
                    times[name].append(dt)
    finally:
        for conn in conns.values():
            conn.close()
    return times


def child(model: Path, batch: int) -> list[float]:
    """In this process: onnxruntime on `model`, one thread, seconds per call at `batch` rows."""
    from circlefit.contract import INPUT_NAME
    from circlefit.runtime import load_session

    session = load_session(model, threads=1)
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-20, 20, size=(batch, 2)).astype(np.float32) for _ in range(16)]
    calls, warmup = CHILD_CALLS[batch]
    out = []
    for k in range(warmup + calls):
        feed = {INPUT_NAME: inputs[k % len(inputs)]}
        t0 = time.perf_counter()
        session.run(None, feed)
        if k >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def in_process(model: Path, batch: int) -> list[float]:
    cmd = [sys.executable, __file__, "--child", str(model), "--batch", str(batch)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def record(into: dict[str, dict[str, list[float]]], name: str, b1: list[float], big: list[float]) -> None:
    for key, value in (("b1_p50_s", pct(b1, 50)), ("b1_p99_s", pct(b1, 99)), ("big_s", statistics.median(big))):
        into.setdefault(name, {}).setdefault(key, []).append(value)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {d: version(d) for d in ("mlflow-skinny", "uvicorn", "fastapi", "pandas")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n1", type=int, default=400, help="batch-1 requests per server and round")
    ap.add_argument("--nbig", type=int, default=20, help=f"batch-{BIG} requests per server and round")
    ap.add_argument("--out", type=Path, help="write here instead of bench/results/serve.json")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: not found; run `dvc repro` first")

    from circlefit.package.mlflow import package

    load_before = os.getloadavg()
    rounds: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp, ExitStack() as servers:
        root = Path(tmp)
        floor = floor_bundle(args.model, root / "floor-export")
        graphs = {"model": args.model, "floor": floor}
        packages = {
            "model": package(args.model, root / "model").out,
            "floor": package(floor, root / "floor").out,
            "model_default_threads": package(args.model, root / "model_default_threads", threads=0).out,
        }
        ports = {name: servers.enter_context(MlflowServer(pkg)).port for name, pkg in packages.items()}
        b1, big = bodies(1, args.n1, 0), bodies(BIG, args.nbig, 1)
        for r in range(args.rounds):
            t1 = paired(ports, b1, warmup=50, seed=2 * r)
            tb = paired(ports, big, warmup=3, seed=2 * r + 1)
            for name in ports:
                record(rounds, name, t1[name], tb[name])
            for name, graph in graphs.items():
                record(rounds, f"in_process_{name}", in_process(graph, 1), in_process(graph, BIG))
            print(
                f"round {r + 1}/{args.rounds}: "
                + "; ".join(f"{k} p50 {v['b1_p50_s'][-1] * 1e3:.3f} ms" for k, v in rounds.items()),
                file=sys.stderr,
            )

    med = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in rounds.items()}
    for d in med.values():
        d["big_rows_per_s"] = BIG / d["big_s"]

    def paired_ratio(a: str, b: str, key: str) -> dict[str, Any]:
        """a / b per round (both measured under the same load), then the median over rounds."""
        per_round = [x / y for x, y in zip(rounds[a][key], rounds[b][key], strict=True)]
        return {"median": statistics.median(per_round), "rounds": per_round}

    keys = ("b1_p50_s", "b1_p99_s", "big_s")
    ratios = {
        "served_model_over_served_floor": {k: paired_ratio("model", "floor", k) for k in keys},
        "default_threads_over_served_floor": {k: paired_ratio("model_default_threads", "floor", k) for k in keys},
        "served_over_in_process_model": {k: paired_ratio("model", "in_process_model", k) for k in keys},
    }
    payload: dict[str, Any] = {
        "method": {
            "rounds": args.rounds,
            "batch_1_requests": args.n1,
            "batch_big": BIG,
            "batch_big_requests": args.nbig,
            "in_process_calls": {str(k): v[0] for k, v in CHILD_CALLS.items()},
            "client": "http.client keep-alive, requests alternating between servers in shuffled order",
            "server": "mlflow models serve --env-manager local -w 1 (uvicorn)",
        },
        "versions": versions(),
        "loadavg": {"before": load_before, "after": os.getloadavg()},
        "medians": med,
        "ratios": ratios,
        "rounds": rounds,
    }
    path = save("serve", payload, path=args.out)
    print(
        json.dumps(
            {"medians": med, "ratios": {k: {m: r["median"] for m, r in v.items()} for k, v in ratios.items()}}, indent=2
        )
    )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
