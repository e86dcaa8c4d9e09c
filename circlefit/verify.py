"""`circlefit verify`: a model file checks itself against its sidecar and probes (onnxruntime, no torch).

PATH is a model `X.onnx` with its sidecar `X.json` beside it, or a directory that holds one. The
checks run cheapest first and stop at the first failure, which names its check and its file:

  model    PATH is a model file, or a directory with one `*.onnx` that has a sidecar
  sidecar  the sidecar exists, is a circlefit sidecar and names the model's sha256, size and probes file
  sha256   the model's bytes hash to the sidecar's sha256 and have its size
  probes   the probes file has the sha256 the sidecar names and belongs to this model
  load     onnxruntime loads the model and it has the contract's inputs and outputs (circlefit.runtime)
  parity   every probe's output is within the export's own tolerance (circlefit.export.parity.Tolerance,
           with the rtol, label_mean and label_std the probes file records)

The probes are the export's: inputs, and the float64 value of the stored weights at each. So a package
(circlefit.package) that carries the model with its sidecar and probes is checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import onnxruntime as ort

from circlefit.contract import PROBES_FORMAT, SIDECAR_FORMAT, sha256_hex, sidecar_path
from circlefit.errors import DataError, PredictError, VerifyError
from circlefit.export.parity import Tolerance
from circlefit.io import json_number, read_json
from circlefit.runtime import predict, session_from_bytes

__all__ = ["CHECKS", "Probes", "Verified", "find_model", "verify"]

CHECKS = ("model", "sidecar", "sha256", "probes", "load", "parity")


@dataclass(frozen=True)
class Probes:
    """The export's probes: inputs, the float64 value of the stored weights at each, and the tolerance."""

    file: Path
    xy: np.ndarray  # float32 [N, 2]
    expected: np.ndarray  # float64 [N]
    tolerance: Tolerance

    def ratios(self, got: np.ndarray) -> np.ndarray:
        """|got - expected| / bound per probe for outputs `got` [N]: <= 1 is within tolerance (NaN: inf)."""
        return self.tolerance.ratio(got, self.expected)


@dataclass(frozen=True)
class Verified:
    """What `verify` checked, for its one-line report."""

    model: Path
    data: bytes  # the verified bytes of `model`
    sidecar: Path
    sha256: str
    probes: Probes
    worst: float  # the largest |got - expected| / bound over the probes; <= 1 passed
    runtime: str

    def summary(self) -> str:
        return (
            f"{self.model}: ok: sha256 {self.sha256[:12]}… matches {self.sidecar.name}; {len(self.probes.xy)} probes "
            f"within the export's tolerance (rtol {self.probes.tolerance.rtol:g}) in {self.runtime}, "
            f"worst {self.worst:.2f} of the bound"
        )


def find_model(path: Path) -> Path:
    """The model PATH names: the file itself, or the one `*.onnx` with a sidecar in directory PATH."""
    if path.is_dir():
        models = sorted(p for p in path.glob("*.onnx") if p.is_file())
        paired = [p for p in models if sidecar_path(p).is_file()]
        if len(paired) == 1:
            return paired[0]
        if len(models) == 1:
            return models[0]  # the sidecar check names the missing sidecar
        if not models:
            raise VerifyError("model", path, "no *.onnx model in this directory")
        names = ", ".join(p.name for p in models)
        raise VerifyError("model", path, f"{len(models)} models here ({names}); name the one to check")
    if not path.is_file():
        raise VerifyError("model", path, "no such file or directory")
    return path


def _json(path: Path, check: str) -> dict[str, Any]:
    try:
        data = read_json(path)
    except DataError as e:
        raise VerifyError(check, path, str(e).removeprefix(f"{path}: ")) from None
    if not isinstance(data, dict):
        raise VerifyError(check, path, "not a JSON object")
    return data


def _field(obj: dict[str, Any], dotted: str, kind: type, path: Path, check: str) -> Any:
    value: Any = obj
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise VerifyError(check, path, f"{dotted} must be a {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Sidecar:
    path: Path
    sha256: str
    size: int
    probes: Path
    probes_sha256: str
    probes_count: int


def _read_sidecar(model: Path) -> _Sidecar:
    side = sidecar_path(model)
    if not side.is_file():
        raise VerifyError("sidecar", side, f"missing: {model.name} has no sidecar beside it")
    data = _json(side, "sidecar")
    if data.get("format") != SIDECAR_FORMAT:
        raise VerifyError("sidecar", side, f"format is {data.get('format')!r}, expected {SIDECAR_FORMAT!r}")
    name = _field(data, "probes.file", str, side, "sidecar")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise VerifyError("sidecar", side, f"probes.file {name!r} must be a path relative to the sidecar")
    return _Sidecar(
        path=side,
        sha256=_field(data, "model.sha256", str, side, "sidecar"),
        size=_field(data, "model.bytes", int, side, "sidecar"),
        probes=side.parent / rel,
        probes_sha256=_field(data, "probes.sha256", str, side, "sidecar"),
        probes_count=_field(data, "probes.count", int, side, "sidecar"),
    )


def _check_sha256(model: Path, side: _Sidecar) -> bytes:
    """The model's bytes, once they match the sidecar: every later check uses these, not the file again."""
    try:
        data = model.read_bytes()
    except OSError as e:
        raise VerifyError("sha256", model, f"cannot read it ({e.strerror})") from None
    actual = sha256_hex(data)
    if actual != side.sha256 or len(data) != side.size:
        raise VerifyError(
            "sha256",
            model,
            f"sha256 {actual} ({len(data)} bytes) differs from {side.path.name}'s {side.sha256} ({side.size} bytes): "
            "the file is corrupt or was replaced",
        )
    return data


def _read_probes(side: _Sidecar, model_sha256: str) -> Probes:
    path = side.probes
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VerifyError("probes", path, f"cannot read the probes {side.path.name} names ({e.strerror})") from None
    if sha256_hex(raw) != side.probes_sha256:
        raise VerifyError("probes", path, f"sha256 differs from {side.path.name}'s probes.sha256")
    data = _json(path, "probes")
    if data.get("format") != PROBES_FORMAT:
        raise VerifyError("probes", path, f"format is {data.get('format')!r}, expected {PROBES_FORMAT!r}")
    if data.get("model_sha256") != model_sha256:
        raise VerifyError("probes", path, f"model_sha256 {data.get('model_sha256')!r} is not this model's")
    try:
        xy = np.asarray(data.get("inputs"), dtype=np.float32)
        expected = np.asarray(data.get("expected"), dtype=np.float64)
        tol = data.get("tolerance")
        tolerance = Tolerance(*(json_number(tol, k, path) for k in ("rtol", "label_mean", "label_std")))
    except (ValueError, TypeError) as e:  # DataError is a ValueError
        raise VerifyError("probes", path, str(e).removeprefix(f"{path}: ")) from None
    n = side.probes_count
    if xy.shape != (n, 2) or expected.shape != (n,) or not np.isfinite(expected).all():
        raise VerifyError(
            "probes",
            path,
            f"expected {n} inputs [x, y] and {n} finite expected values ({side.path.name}'s probes.count); "
            f"got inputs {list(xy.shape)}, expected {list(expected.shape)}",
        )
    return Probes(path, xy, expected, tolerance)


def _check_parity(model: Path, data: bytes, probes: Probes) -> float:
    try:
        session = session_from_bytes(data, model, threads=1)  # the export's parity gate runs 1 thread too
    except PredictError as e:
        raise VerifyError("load", model, str(e).removeprefix(f"{model}: ")) from None
    try:
        got = predict(session, probes.xy)
    except Exception as e:  # onnxruntime's own exception types derive from Exception only
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VerifyError("load", model, f"onnxruntime cannot run the probes ({first})") from None
    ratio = probes.ratios(got)
    failing = int((ratio > 1.0).sum())
    if failing:
        i = int(np.argmax(ratio))
        x, y = (float(v) for v in probes.xy[i])
        bound = float(probes.tolerance.bound(probes.expected[i : i + 1])[0])
        raise VerifyError(
            "parity",
            model,
            f"{failing} of {len(ratio)} probes ({probes.file.name}) out of the export's tolerance; worst "
            f"xy=({x!r}, {y!r}): expected {float(probes.expected[i])!r}, got {float(got[i])!r}, "
            f"|diff| {abs(float(got[i]) - float(probes.expected[i])):.6g} > {bound:.6g}",
        )
    return float(np.max(ratio, initial=0.0))


def verify(path: str | Path) -> Verified:
    """Check the model PATH names (see the module's doc); raises VerifyError on the first check that fails."""
    model = find_model(Path(path))
    side = _read_sidecar(model)
    data = _check_sha256(model, side)
    sha = sha256_hex(data)
    probes = _read_probes(side, sha)
    worst = _check_parity(model, data, probes)
    return Verified(model, data, side.path, sha, probes, worst, f"onnxruntime {ort.__version__}")
