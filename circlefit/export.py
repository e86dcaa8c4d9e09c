"""Export CircleModel to one self-contained, path-independent ONNX file with metadata (torch side)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from google.protobuf.message import Message

import circlefit
from circlefit.card import card_path, model_card
from circlefit.config import PARAMS_FILE, Params, as_dict
from circlefit.errors import ConfigError, DataError
from circlefit.io import atomic_dir, atomic_file, dumps_json
from circlefit.model import CircleModel, fold_normalizer
from circlefit.normalize import Stats
from circlefit.parity import Runner, Tolerance, check_parity, parity_inputs, runners
from circlefit.predict import INPUT_NAME, OUTPUT_NAME, sha256_hex, sidecar_path
from circlefit.reference import Weights
from circlefit.reference import predict as reference_predict
from circlefit.sidecar import ParityRecord, ProbesRef, Provenance, build_sidecar, probe_inputs, probes_json
from circlefit.zoo import write_test_data_set, zoo_dir

__all__ = [
    "HASHED_SECTIONS",
    "MODEL_VERSION",
    "Bundle",
    "annotate",
    "check_stats",
    "export_bundle",
    "export_onnx",
    "params_digest",
    "provenance",
    "reference_outputs",
    "strip_metadata",
    "write_verified",
]

log = logging.getLogger(__name__)

MODEL_VERSION = 1  # the graph's contract (xy float32 [batch, 2] -> x2_plus_y2 float32 [batch, 1]); bump on change
HASHED_SECTIONS = ("data", "normalize", "model", "train", "export")  # the params that determine the file
_EXAMPLE_BATCH = 8  # > 1: torch.export specializes sizes 0 and 1, the batch stays symbolic


def strip_metadata(proto: Message) -> None:
    """Clear every `metadata_props` and `doc_string` in the model, its graphs, subgraphs and functions.

    The exporter records per-node stack traces with absolute source paths (the file's hash would
    change with the checkout's path), FX node names and the ExportedProgram signature.
    """
    for field, value in proto.ListFields():
        if field.name in ("metadata_props", "doc_string"):
            proto.ClearField(field.name)
        elif field.type == field.TYPE_MESSAGE:
            for item in (value,) if isinstance(value, Message) else value:  # a message or a repeated field
                strip_metadata(item)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hold the exporter's chatter (pass-manager INFO, "torchvision is not installed") to errors only."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecation notices from torch.export internals
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: CircleModel, opset: int, source: str = PARAMS_FILE, fold: bool = True) -> onnx.ModelProto:
    """The model (raw xy in, raw x² + y² out) as a stripped ModelProto of exactly `opset`, weights inside.

    The normalizer is folded into the first and last layers (`circlefit.model.fold_normalizer`):
    the graph is Gemm → activation → … → Gemm, with the stats kept in the metadata. `fold=False`
    exports the elementwise Sub/Div … Mul/Add around the network instead (bench/export_variants.py).

    PyTorch's TorchScript exporter (`dynamo=False`) writes this graph in a fraction of the time
    the dynamo exporter takes, most of which is one-time setup of its op registry and of
    torch.export (BENCHMARKS.md "Export"); both give Gemm → Relu → Gemm here.
    """
    model = model.to("cpu").eval()
    module = fold_normalizer(model) if fold else model
    buf = io.BytesIO()
    with _quiet_exporter():
        torch.onnx.export(
            module,
            (torch.zeros(_EXAMPLE_BATCH, 2),),
            cast(Any, buf),  # the TorchScript exporter writes to a file-like object too
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    strip_metadata(proto)
    got = {o.domain: o.version for o in proto.opset_import}.get("")
    if got != opset:  # the exporter silently substitutes an opset it can produce
        raise ConfigError(f"{source}: export.opset {opset} cannot be produced by torch {torch.__version__} (got {got})")
    # Stripped of node metadata, the graph uses nothing newer than its opset's IR version; stamping that
    # (8 for opset 18) instead of the exporter's lets older runtimes load the file too.
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    return proto


def params_digest(params: Params) -> tuple[str, str]:
    """(sha256, canonical JSON) of the params sections that determine the exported file."""
    text = dumps_json(_hashed_params(params))
    return sha256_hex(text.encode()), text


def _hashed_params(params: Params) -> dict[str, Any]:
    return {name: as_dict(getattr(params, name)) for name in HASHED_SECTIONS}


def provenance(stats: Stats, params: Params, train_radius: float, metrics: dict[str, Any]) -> Provenance:
    """What the file is made from, built once; `annotate` and the sidecar both take it."""
    hashed = _hashed_params(params)
    return Provenance(
        normalization=stats.to_json(),
        train_radius=float(train_radius),
        params=hashed,
        params_sha256=sha256_hex(dumps_json(hashed).encode()),
        exporter=f"torch {torch.__version__}, onnx {onnx.__version__}",
        metrics=metrics,
    )


def check_stats(model: CircleModel, stats: Stats, weights: str, stats_file: str) -> None:
    """The model's baked-in normalizer must be exactly the stats file's (float32), else it is stale."""
    pairs = {
        "xy_mean": (model.xy_mean, stats.mean[:2]),
        "xy_std": (model.xy_std, stats.std[:2]),
        "label_mean": (model.label_mean, stats.mean[2:]),
        "label_std": (model.label_std, stats.std[2:]),
    }
    for name, (buf, want) in pairs.items():
        if not np.array_equal(buf.detach().cpu().numpy(), np.asarray(want, dtype=np.float32)):
            raise DataError(
                f"{weights}: buffer {name} {buf.tolist()} differs from {stats_file} {list(want)}; "
                "the weights were trained with other stats (rerun train)"
            )


def annotate(proto: onnx.ModelProto, prov: Provenance) -> dict[str, str]:
    """Set doc_string, producer, model_version and circlefit.* metadata_props; returns the props."""
    train_radius = prov.train_radius
    proto.producer_name = "circlefit"
    proto.producer_version = circlefit.__version__
    proto.domain = "circlefit"
    proto.model_version = MODEL_VERSION
    proto.doc_string = (
        f"circlefit: predicts x² + y² from raw coordinates. Input {INPUT_NAME!r} float32 [batch, 2] (x, y); "
        f"output {OUTPUT_NAME!r} float32 [batch, 1]. Input standardization and label de-standardization are "
        "folded into the first and last layers' weights (the stats: metadata circlefit.normalization). "
        f"Trained on radius <= {train_radius:g}; outside it the error grows."
    )
    props = {
        "circlefit.normalization": dumps_json(prov.normalization).strip(),
        "circlefit.params_sha256": prov.params_sha256,
        "circlefit.params": dumps_json(prov.params).strip(),
        "circlefit.train_radius": repr(train_radius),
        "circlefit.exporter": prov.exporter,
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    return props


def reference_outputs(
    model: CircleModel, sets: dict[str, np.ndarray], written: str = "probes"
) -> dict[str, np.ndarray]:
    """The float64 reference [N] per input set, what every runtime is checked against.

    The set whose values are written to a file (`written`: the probes) comes from
    circlefit.reference, the same bits on any CPU. The others only decide the verdict: PyTorch's
    float64 forward of the same weights, within ~1e-13 relative of that reference (its last bits
    vary by CPU, far below the tolerance's 1e-5) and a hundred times faster on 10⁵ rows.
    """
    weights = Weights.of(model)
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        out = {
            name: double(torch.from_numpy(xy).double())[:, 0].numpy() for name, xy in sets.items() if name != written
        }
    return out | {written: reference_predict(weights, sets[written])}


def _torch_runner(model: CircleModel) -> Runner:
    def run(xy: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(xy))).numpy()

    return run


@dataclass(frozen=True)
class Bundle:
    """Where the verified bundle goes. Beside the model (`X/model.onnx`) always sit its sidecar
    (`X/model.json`), the Model Zoo test data set (`X/test_data_set_0/`, circlefit.zoo) and the model
    card (`X/README.md`, circlefit.card).
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
    expected = reference_outputs(model, sets)
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
        write_test_data_set(zoo_tmp, proto, json.loads(probes))
        card_tmp.write_text(model_card(json.loads(sidecar), json.loads(probes), out.model.name), encoding="utf-8")
    return json.loads(sidecar)  # exactly what the file holds


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
    """Export, annotate and verify `model`; write model, sidecar and probes. Returns the sidecar.

    `source` is the params file as the user named it, for errors about its values.
    """
    cfg = params.export
    proto = export_onnx(model, cfg.opset, source)
    prov = provenance(stats, params, train_radius, metrics)
    annotate(proto, prov)
    rng = np.random.default_rng(cfg.seed)
    sets = parity_inputs(splits, train_radius, cfg.parity_random, cfg.parity_large_batch, rng)
    sets["probes"] = probe_inputs(sets, train_radius, cfg.probes)
    tol = Tolerance(cfg.rtol, stats.mean[2], stats.std[2])
    return write_verified(proto, model, sets, tol, out, prov)
