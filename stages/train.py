"""train: fit the ReLU MLP on standardized train data; write weights, loss curve and summary.

The default, train.method lstsq on the CPU in one process, is numpy only: this stage then never
imports torch. The gradient method, CUDA and train.distributed go through torch (circlefit.train);
with train.distributed.enabled the stage relaunches itself under torchrun (circlefit.launch),
each rank trains on its shard and rank 0 alone writes (circlefit.distributed).
"""

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from circlefit import lstsq
from circlefit.checkpoint import save_weights
from circlefit.config import PARAMS_FILE, Params, load_params
from circlefit.io import atomic_file, load_array, read_json, write_json
from circlefit.normalize import stats_from_json
from circlefit.stage import run_stage


def write_outputs(
    args: argparse.Namespace, curve: list[dict[str, Any]], summary: dict[str, Any], timing: dict[str, float],
    save: Callable[[Path], None],
) -> None:  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(curve[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(curve)
    with atomic_file(args.curve) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    write_json(args.summary, summary)
    write_json(args.timing, timing)
    with atomic_file(args.model) as tmp:  # last: a model file exists only after a complete run
        save(tmp)


def train_numpy(args: argparse.Namespace, params: Params) -> None:
    """lstsq in this process, numpy only."""
    stats = stats_from_json(read_json(args.stats), args.stats)
    data = Path(args.data)
    rows = [load_array(data / f"{name}.npy", 3) for name in ("train", "val")]
    done = lstsq.run(
        params.train.lstsq, params.model.hidden, params.model.activation, stats, *rows, params.train.threads
    )
    write_outputs(args, done.curve, done.summary, done.timing, lambda path: save_weights(done.weights, path))


def train_torch(args: argparse.Namespace, params: Params) -> None:
    """The gradient method, CUDA or torchrun ranks."""
    from circlefit import distributed
    from circlefit.checkpoint import save_model
    from circlefit.device import configure, resolve_device
    from circlefit.launch import run_ranks, under_torchrun
    from circlefit.progress import Progress
    from circlefit.train import train

    dcfg = params.train.distributed
    if dcfg.enabled and not under_torchrun():
        inputs = ["--params", args.params, "--data", args.data, "--stats", args.stats]
        outputs = {"--curve": args.curve, "--summary": args.summary, "--timing": args.timing, "--model": args.model}
        threads = distributed.threads_per_rank(params.train.threads, dcfg.nproc_per_node)
        run_ranks("stages.train", inputs, outputs, dcfg.nproc_per_node, threads)
        return
    dist, device = distributed.start(dcfg, resolve_device(params.train.device, args.params), args.params)
    try:
        configure(
            device, distributed.threads_per_rank(params.train.threads, dist.local_world_size), params.train.precision
        )
        stats = stats_from_json(read_json(args.stats), args.stats)
        data = Path(args.data)
        train_rows = distributed.shard(load_array(data / "train.npy", 3, mmap=dist.ddp), dist)
        val_rows = distributed.shard(load_array(data / "val.npy", 3, mmap=dist.ddp), dist)

        progress = Progress(params.train.epochs) if dist.rank == 0 else None
        result = train(params.train, params.model, stats, train_rows, val_rows, device, progress, dist=dist)
        dist.barrier()  # every rank finished training before rank 0 writes anything
        if progress is not None:
            progress.close()
        if dist.rank == 0:
            write_outputs(args, result.curve, result.summary, result.timing, lambda p: save_model(result.model, p))
    finally:
        distributed.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=PARAMS_FILE)
    ap.add_argument("--data", required=True, help="directory written by the generate stage")
    ap.add_argument("--stats", required=True, help="stats JSON written by the normalize stage")
    ap.add_argument("--model", required=True, help="output weights (.safetensors)")
    ap.add_argument("--curve", required=True, help="output loss curve (TSV)")
    ap.add_argument("--summary", required=True, help="output run summary (JSON, deterministic)")
    ap.add_argument("--timing", required=True, help="output wall-time JSON (not a DVC out)")
    args = ap.parse_args()

    params = load_params(args.params)
    t = params.train
    if t.method == "lstsq" and t.device == "cpu" and not t.distributed.enabled:
        train_numpy(args, params)
    else:
        train_torch(args, params)  # the device is checked before any input is read


if __name__ == "__main__":
    run_stage("train", main)
