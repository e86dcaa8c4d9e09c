"""The verified bundle: model.onnx, its sidecar, probes, Model Zoo test data set and card, all or nothing.

`export_bundle` exports the graph (circlefit.export.graph), runs every input set through every
runtime against the float64 value of the stored weights (circlefit.export.parity), and only then
renames the files into place, the model last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from circlefit.config import PARAMS_FILE, Params
from circlefit.contract import card_path, sha256_hex, sidecar_path, zoo_dir
from circlefit.data.normalize import Stats
from circlefit.errors import DataError
from circlefit.export.card import model_card
from circlefit.export.graph import annotate, export_onnx, provenance
from circlefit.export.parity import Runner, Tolerance, check_parity, parity_inputs, runners
from circlefit.export.sidecar import ParityRecord, ProbesRef, Provenance, build_sidecar, probe_inputs, probes_json
from circlefit.export.zoo import write_test_data_set
from circlefit.io import atomic_dir, atomic_file, dumps_json
from circlefit.model.network import CircleModel
from circlefit.numeric import mlp64
from circlefit.numeric.mlp64 import Weights

__all__ = ["Bundle", "check_stats", "expected_outputs", "export_bundle", "write_verified"]

log = logging.getLogger(__name__)


def check_stats(model: CircleModel, stats: Stats, weights: str, stats_file: str) -> None:
    """The model's baked-in normalizer must be exactly the stats file's (float32), else it is stale."""
    buffers = dict(model.named_buffers())
    for name, want in stats.buffers().items():
        buf = buffers[name]
        if not np.array_equal(buf.detach().cpu().numpy(), want):
            raise DataError(
                f"{weights}: buffer {name} {buf.tolist()} differs from {stats_file} {want.tolist()}; "
                "the weights were trained with other stats (rerun train)"
            )


def expected_outputs(model: CircleModel, sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The expected float64 outputs [N] per input set, what every runtime is checked against: the
    stored float32 weights evaluated by circlefit.numeric.mlp64, the same bits on any CPU."""
    weights = Weights.of(model)
    return {name: mlp64.predict(weights, xy) for name, xy in sets.items()}


def _torch_runner(model: CircleModel) -> Runner:
    def run(xy: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(xy))).numpy()

    return run


@dataclass(frozen=True)
class Bundle:
    """Where the verified bundle goes. Beside the model (`X/model.onnx`) always sit its sidecar
    (`X/model.json`), the Model Zoo test data set (`X/test_data_set_0/`, circlefit.export.zoo) and the
    model card (`X/README.md`, circlefit.export.card).
    """

    model: Path
    probes: Path

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.model)

    @property
    def test_data_set(self) -> Path:
        return zoo_dir(self.model)

    @property
    def card(self) -> Path:
        return card_path(self.model)

    def remove(self) -> None:
        for path in (self.model, self.sidecar, self.probes, self.test_data_set, self.card):
            if path.exists():
                log.info("removing %s from an earlier run", path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def write_verified(
    proto: onnx.ModelProto,
    model: CircleModel,
    sets: dict[str, np.ndarray],
    tol: Tolerance,
    out: Bundle,
    prov: Provenance | None,
) -> dict[str, Any]:
    """Serialize, check and parity-test the file as written, then rename model, sidecar, probes, the Zoo
    test data set and the card into place.

    They are written to temp directories beside their final names and renamed (model
    last) only after `onnx.checker` and parity pass; on any failure none of them exists afterwards,
    including files from an earlier run.
    """
    out.remove()
    data = proto.SerializeToString(deterministic=True)
    expected = expected_outputs(model, sets)
    with contextlib.ExitStack() as stack:  # exits in reverse: card, test data set, probes, sidecar, then the model
        onnx_tmp, side_tmp, probes_tmp = (
            stack.enter_context(atomic_file(p)) for p in (out.model, out.sidecar, out.probes)
        )
        zoo_tmp = stack.enter_context(atomic_dir(out.test_data_set))
        card_tmp = stack.enter_context(atomic_file(out.card))
        onnx_tmp.write_bytes(data)
        onnx.checker.check_model(str(onnx_tmp), full_check=True)
        runtimes = {"pytorch": (torch.__version__, _torch_runner(model)), **runners(onnx_tmp)}
        parity = ParityRecord(check_parity(runtimes, sets, expected, tol), {name: len(xy) for name, xy in sets.items()})
        probes = dumps_json(probes_json(sets["probes"], expected["probes"], tol, sha256_hex(data)))
        probes_tmp.write_text(probes, encoding="utf-8")
        probes_ref = ProbesRef(
            file=Path(os.path.relpath(out.probes, out.model.parent)).as_posix(),  # relative: no checkout path
            count=len(sets["probes"]),
            sha256=sha256_hex(probes.encode()),
        )
        sidecar = dumps_json(build_sidecar(proto, data, prov, parity, probes_ref))
        side_tmp.write_text(sidecar, encoding="utf-8")
        # Both from the documents as written, so they cannot disagree with the files beside them.
        probes_doc, sidecar_doc = json.loads(probes), json.loads(sidecar)
        write_test_data_set(zoo_tmp, proto, probes_doc)
        card_tmp.write_text(model_card(sidecar_doc, probes_doc, out.model.name), encoding="utf-8")
    return sidecar_doc  # exactly what the file holds


def export_bundle(
    model: CircleModel,
    stats: Stats,
    params: Params,
    splits: dict[str, np.ndarray],
    train_radius: float,
    metrics: dict[str, Any],
    out: Bundle,
    source: str = PARAMS_FILE,
) -> dict[str, Any]:
    """Export, annotate and verify `model`; write model, sidecar, probes, the Model Zoo set and the card.

    Returns the sidecar.

    `source` is the params file as the user named it, for errors about its values.
    """
    cfg = params.export
    proto = export_onnx(model, cfg.opset, source)
    prov = provenance(stats, params, train_radius, metrics)
    annotate(proto, prov)
    rng = np.random.default_rng(cfg.seed)
    sets = parity_inputs(splits, train_radius, cfg.parity_random, cfg.parity_large_batch, rng)
    sets["probes"] = probe_inputs(sets, train_radius, cfg.probes)
    tol = Tolerance(cfg.rtol, stats.label_mean, stats.label_std)
    return write_verified(proto, model, sets, tol, out, prov)
