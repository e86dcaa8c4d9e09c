"""train: fit the ReLU MLP on the standardized train split; write weights, loss curve and summary.

The default, train.method lstsq on the CPU in one process, is numpy only: this stage then never
imports torch. With train.distributed.enabled the stage relaunches itself under torchrun
(circlefit.train.launch); each rank trains on its shard and rank 0 alone writes.
"""

import argparse

from circlefit.config import PARAMS_FILE, load_params
from circlefit.data.normalize import read_stats
from circlefit.device import resolve_device
from circlefit.io import write_json, write_table
from circlefit.model.weights import save_weights
from circlefit.train import Rows, TrainResult, train
from circlefit.train.distributed import joined, threads_per_rank
from circlefit.train.launch import run_ranks, under_torchrun
from circlefit.train.progress import Progress
from stages.edge import run_stage


def write(args: argparse.Namespace, result: TrainResult) -> None:
    write_table(args.curve, result.curve, delimiter="\t")
    write_json(args.summary, result.summary)
    write_json(args.timing, result.timing)
    save_weights(result.weights, args.model)  # last: a model file exists only after a complete run


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
    cfg, ranks = params.train, params.train.distributed
    if ranks.enabled and not under_torchrun():  # this process becomes the launcher of the ranks
        inputs = ["--params", args.params, "--data", args.data, "--stats", args.stats]
        outputs = {"--curve": args.curve, "--summary": args.summary, "--timing": args.timing, "--model": args.model}
        run_ranks(
            "stages.train", inputs, outputs, ranks.nproc_per_node, threads_per_rank(cfg.threads, ranks.nproc_per_node)
        )
        return
    device = resolve_device(cfg.device, args.params)  # before any input is read
    with joined(ranks, device, args.params) as (dist, device):
        progress = Progress(cfg.gradient.epochs) if dist.rank == 0 else None
        stats, rows = read_stats(args.stats), Rows.load(args.data, dist)
        result = train(cfg, params.model, stats, rows, device, dist=dist, on_eval=progress, source=args.params)
        dist.barrier()  # every rank finished training before rank 0 writes anything
        if progress is not None:
            progress.close()
        if dist.rank == 0:
            write(args, result)


if __name__ == "__main__":
    run_stage("train", main)
