"""`circlefit package ort`: the ORT format, for onnxruntime's minimal (reduced-size) builds.

    OUT/model.ort                    the graph converted by onnxruntime.tools (optimizations applied, then saved)
    OUT/required_operators.config    the operators it uses: the input of a reduced-operator onnxruntime build
    OUT/model.ort.json               what was converted: the .ort's sha256, the source's, the converter
    OUT/model.onnx                   the verified source, with model.json and probes.json beside it

Full onnxruntime builds (the Python wheel, the Android and iOS packages, web, node) read model.onnx
directly; a minimal build (`--minimal_build`) reads only the ORT format. Two conversions of one
model may differ in bytes (the order of the operator table), so the package is checked by its
outputs: on the probes, within the export's tolerance of the expected values, and on random rows
over the probes' range, within that tolerance of model.onnx's outputs in onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from circlefit.contract import sha256_hex
from circlefit.errors import PackageError
from circlefit.io import dumps_json
from circlefit.package.base import MODEL_FILE, Packaged, Source, load_source, write_package
from circlefit.runtime import predict, session_from_bytes

__all__ = ["CHECK_ROWS", "MANIFEST_FORMAT", "ORT_FILE", "convert", "package"]

ORT_FILE = "model.ort"
CONFIG_FILE = "required_operators.config"
MANIFEST_FORMAT = "circlefit-ort/1"
CHECK_ROWS = 65_536  # random rows the .ort must answer as model.onnx does before the package is written


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints its progress and logs an INFO line; a package command prints one line."""
    logger = logging.getLogger("ort_format_model.utils")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _converter() -> Any:
    """onnxruntime.tools' converter module, imported without running `onnxruntime/tools/__init__.py`.

    That file imports torch whenever torch is installed, for a PyTorch helper of its own; the
    converter needs none of it, and the CLI never loads torch. The package's modules still load from
    its own directory: only its `__init__` is skipped (unless something imported it already).
    """
    package = "onnxruntime.tools"
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            raise PackageError(f"onnxruntime {ort.__version__} has no {package}; the ORT format needs them")
        sys.modules[package] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{package}.convert_onnx_models_to_ort")


def convert(data: bytes) -> tuple[bytes, str]:
    """(the ORT-format bytes, the required-operators config) of ONNX bytes, converted in a private directory.

    The converter writes beside its input, so it gets a copy. Fixed optimizations, no target platform:
    the fusions are saved in the file, and no x86-only layout is baked in.
    """
    converter = _converter()
    with tempfile.TemporaryDirectory(prefix="circlefit-ort-") as tmp:
        src, out = Path(tmp) / "src" / MODEL_FILE, Path(tmp) / "out"
        src.parent.mkdir()
        src.write_bytes(data)
        with _quiet():
            converter.convert_onnx_models_to_ort(
                src, output_dir=out, optimization_styles=[converter.OptimizationStyle.Fixed]
            )
        converted = out / Path(MODEL_FILE).with_suffix(".ort").name
        if not converted.is_file():
            raise PackageError(f"{src.name}: onnxruntime's converter wrote no {converted.name}")
        config = (out / f"{Path(MODEL_FILE).stem}.required_operators.config").read_text(encoding="utf-8")
        # its header names the converter's temporary path; name the packaged file instead
        lines = [f"# - {ORT_FILE}" if line.startswith("# - ") else line for line in config.splitlines()]
        return converted.read_bytes(), "\n".join(lines) + "\n"


def _check(ort_bytes: bytes, source: Source) -> dict[str, Any]:
    """Refuse an .ort whose outputs leave the export's tolerance; returns what was checked."""
    # the contract's inputs and outputs, one thread as the parity gate
    converted = session_from_bytes(ort_bytes, ORT_FILE, threads=1)
    reference = session_from_bytes(source.data, source.model, threads=1)
    probes = source.probes
    worst = float(np.max(probes.ratios(predict(converted, probes.xy)), initial=0.0))
    if not worst <= 1.0:
        raise PackageError(f"{source.model}: the converted {ORT_FILE} misses the probes' tolerance ({worst:.3g} of it)")
    box = float(np.max(np.abs(probes.xy), initial=1.0))
    xy = np.random.default_rng(0).uniform(-box, box, size=(CHECK_ROWS, 2)).astype(np.float32)
    want = predict(reference, xy).astype(np.float64)
    got = predict(converted, xy)
    if not (probes.tolerance.ratio(got, want) <= 1.0).all():
        diff = np.abs(got.astype(np.float64) - want)
        raise PackageError(
            f"{source.model}: the converted {ORT_FILE} differs from it beyond the export's tolerance "
            f"(max |diff| {float(np.nanmax(diff)):.3g} over {CHECK_ROWS} random rows)"
        )
    return {
        "probes": len(probes.xy),
        "random_rows": CHECK_ROWS,
        "range": [-box, box],
        "rule": "probes within the export's tolerance of expected; random rows within it of model.onnx's outputs",
    }


def package(model: str | Path, out: str | Path) -> Packaged:
    """Verify `model`, convert it to the ORT format, check the outputs, then write the package into `out`."""
    source = load_source(model)
    ort_bytes, config = convert(source.data)
    checked = _check(ort_bytes, source)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": {"file": ORT_FILE, "sha256": sha256_hex(ort_bytes), "bytes": len(ort_bytes)},
        "source": {"file": MODEL_FILE, "sha256": source.sha256},
        "converter": f"onnxruntime {ort.__version__} tools.convert_onnx_models_to_ort, optimization style Fixed",
        "required_operators": CONFIG_FILE,
        "checked": checked,
    }

    def fill(tmp: Path) -> None:
        (tmp / ORT_FILE).write_bytes(ort_bytes)
        (tmp / CONFIG_FILE).write_text(config, encoding="utf-8")
        (tmp / f"{ORT_FILE}.json").write_text(dumps_json(manifest), encoding="utf-8")
        (tmp / MODEL_FILE).write_bytes(source.data)

    return write_package("ort", source, out, MODEL_FILE, fill)
