"""A tiny trained model exported through the library (seconds), for tests that need a real model.onnx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circlefit.config import Params, from_mapping
from circlefit.data.generate import Dataset, generate, load_tutorial
from circlefit.data.normalize import Stats, fit_stats
from circlefit.export.bundle import Bundle, export_bundle
from circlefit.model.network import CircleModel, to_module
from circlefit.train import Rows, train

from conftest import REPO, SMALL, merge, repo_params

TINY: dict[str, Any] = merge(
    SMALL,
    {
        "data": {"n": 512, "ood": {"n": 128}},
        "model": {"hidden": [16]},
        "train": {"gradient": {"epochs": 40, "lbfgs_steps": 0, "eval_every": 10}},
        "export": {"probes": 24, "parity_random": 128, "parity_large_batch": 1024},
    },
)


@dataclass
class Tiny:
    params: Params
    ds: Dataset
    stats: Stats
    model: CircleModel

    def splits(self) -> dict[str, Any]:
        return {"test": self.ds.test[:, :2], "ood": self.ds.ood[:, :2]}

    def export(self, out: Path) -> tuple[Bundle, dict[str, Any]]:
        bundle = Bundle(model=out / "model.onnx", probes=out / "probes.json")
        sidecar = export_bundle(
            self.model, self.stats, self.params, self.splits(), self.ds.train_radius, {"test": {"rmse": 1.0}}, bundle
        )
        return bundle, sidecar


def tiny_model(overrides: dict[str, Any] | None = None) -> Tiny:
    params = from_mapping(Params, merge(merge(repo_params(), TINY), overrides or {}))
    ds = generate(params.data, load_tutorial(REPO / "data/tutorial36.csv"))
    stats = fit_stats(ds.train, params.normalize.min_std)
    result = train(params.train, params.model, stats, Rows(ds.train, ds.val))
    return Tiny(params, ds, stats, to_module(result.weights))
