"""Parity of an exported model in every runtime against the float64 reference (no torch here).

The expected values are circlefit.numeric.mlp64's: the stored float32 weights evaluated in float64
with CPU-independent arithmetic. Runtimes compute in float32 with kernels picked per CPU, so their
last bits vary by machine: the sidecar records each runtime's verdict and the bound it met, never
the machine-specific maxima (those go to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort

from circlefit.contract import INPUT_NAME, OUTPUT_NAME
from circlefit.errors import ParityError
from circlefit.runtime import load_session

__all__ = ["ParityError", "Runner", "Tolerance", "check_parity", "parity_inputs", "runners"]

log = logging.getLogger(__name__)
Runner = Callable[[np.ndarray], np.ndarray]
# Rows per runtime call: a split of 10⁶ rows goes through in blocks, so no runtime holds its whole
# [rows, width] hidden layer (memory stays flat at any data.n).
BLOCK_ROWS = 65536


@dataclass(frozen=True)
class Tolerance:
    """|runtime - reference| <= rtol * (|reference| + |label_mean| + label_std), per output.

    Why this scale: the runtimes compute y = net(z) * label_std + label_mean in float32, and the file
    the same with label_std and label_mean folded into the last layer (W·label_std, b·label_std +
    label_mean). Runtimes sum the dot products in a different order (and with or without FMA),
    so net(z) picks up rounding of a few ulps of its own O(1) standardized magnitude; multiplied
    by label_std and added to label_mean, that error lives at the magnitude of |y|, |label_mean|
    and label_std, never below. An absolute bound would be too loose near the origin or too tight far out
    (labels reach ~400 in the training disk, ~3200 at the corners of the random points' box);
    a bound relative to |y| alone would fail near y ≈ 0, where the rounding of `+ label_mean`
    (≈ 200) still shows. rtol = 1e-5
    is ~84 float32 ulps of that scale: room for accumulation-order noise, far below the
    1e-3-and-up shifts that any changed weight or normalization constant causes.
    """

    rtol: float
    label_mean: float
    label_std: float

    @property
    def offset(self) -> float:
        return abs(self.label_mean) + self.label_std

    def bound(self, reference: np.ndarray) -> np.ndarray:
        return self.rtol * (np.abs(reference.astype(np.float64)) + self.offset)

    def ratio(self, got: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """|got - reference| / bound per output: <= 1 is within tolerance (NaN: inf)."""
        diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
        return np.where(np.isnan(diff), np.inf, diff / self.bound(reference))

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": "|runtime - reference| <= rtol * (|reference| + |label_mean| + label_std)",
            "rtol": self.rtol,
            "label_mean": self.label_mean,
            "label_std": self.label_std,
        }


def parity_inputs(
    splits: dict[str, np.ndarray], radius: float, n_random: int, large: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Named float32 [N, 2] input sets: the given splits, random points in [-2R, 2R]², batches 0, 1, 7, large."""
    box = 2.0 * radius
    random = rng.uniform(-box, box, size=(n_random, 2)).astype(np.float32)
    sets = {name: np.ascontiguousarray(xy[:, :2], dtype=np.float32) for name, xy in splits.items()}
    sets["random"] = random
    for n in (0, 1, 7):
        sets[f"batch_{n}"] = rng.uniform(-box, box, size=(n, 2)).astype(np.float32)
    sets["batch_large"] = rng.uniform(-box, box, size=(large, 2)).astype(np.float32)
    return sets


def runners(path: Path) -> dict[str, tuple[str, Runner]]:
    """The file's runtimes: onnxruntime (1 thread) and onnx.reference, each (version, run)."""
    import onnx  # here, not at the top: `circlefit verify` needs this module's Tolerance, not onnx
    from onnx.reference import ReferenceEvaluator

    session = load_session(path, threads=1, verify_sidecar=False)  # threads pinned: same numbers on any machine
    reference = ReferenceEvaluator(onnx.load(str(path), load_external_data=False))
    return {
        "onnxruntime": (ort.__version__, lambda xy: session.run([OUTPUT_NAME], {INPUT_NAME: xy})[0]),
        "onnx.reference": (
            onnx.__version__,
            lambda xy: np.asarray(cast(list[Any], reference.run(None, {INPUT_NAME: xy}))[0]),
        ),
    }


def _compare(got: np.ndarray, ref: np.ndarray, tol: Tolerance) -> dict[str, Any]:
    diff = np.abs(got[:, 0].astype(np.float64) - ref.astype(np.float64))
    ratio = tol.ratio(got[:, 0], ref)
    big = np.abs(ref) >= 1.0  # relative difference is reported where |y| >= 1 (it explodes near y = 0)
    rel = diff[big] / np.abs(ref[big].astype(np.float64))
    worst = int(np.argmax(ratio)) if len(ratio) else -1
    return {
        "points": len(ref),
        "max_abs_diff": float(np.max(diff, initial=0.0)),
        "max_rel_diff": float(np.max(rel, initial=0.0)),
        "max_tol_ratio": float(np.max(ratio, initial=0.0)),
        "failing": int((ratio > 1.0).sum()),
        "worst": worst,
    }


def _fail(
    runtime: str, name: str, xy: np.ndarray, ref: np.ndarray, got: np.ndarray, r: dict[str, Any], tol: Tolerance,
    failing: int, points: int, offset: int,
) -> ParityError:  # fmt: skip
    i = r["worst"]
    x, y = (float(v) for v in xy[i])
    bound = float(tol.bound(ref[i : i + 1])[0])
    return ParityError(
        f"{runtime} differs from the reference beyond tolerance on {failing} of {points} points of set "
        f"{name!r}; worst input xy=({x!r}, {y!r}) (row {offset + i}): reference {float(ref[i])!r}, "
        f"{runtime} {float(got[i, 0])!r}, "
        f"|diff| {abs(float(got[i, 0]) - float(ref[i])):.6g} > tolerance {bound:.6g} ({tol.to_json()['rule']}, "
        f"rtol {tol.rtol:g}); no model was written"
    )


def _blocks(name: str, rows: int) -> list[tuple[int, int]]:
    """[start, stop) of each runtime call on a set: a `batch_*` set tests that batch size and runs whole."""
    if name.startswith("batch_") or rows <= BLOCK_ROWS:
        return [(0, rows)]
    return [(start, min(start + BLOCK_ROWS, rows)) for start in range(0, rows, BLOCK_ROWS)]


def _run_checked(runner: Runner, runtime: str, name: str, xy: np.ndarray) -> np.ndarray:
    got = runner(xy)
    if got.dtype != np.float32 or got.shape != (len(xy), 1):
        raise ParityError(
            f"{runtime} returned {got.dtype} {list(got.shape)} for set {name!r} (batch {len(xy)}); "
            f"expected float32 [{len(xy)}, 1]; no model was written"
        )
    return got


def check_parity(
    runtimes: dict[str, tuple[str, Runner]],
    sets: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    tol: Tolerance,
) -> dict[str, Any]:
    """Run every set through every runtime and compare with the reference's `expected` [N] outputs.

    Raises ParityError naming the worst input (largest |diff| / tolerance) when any output is
    out of tolerance or non-finite where the reference is finite. Returns the portable record:
    per runtime its version, points and verdict, plus the tolerance every one of them met.
    """
    record: dict[str, Any] = {
        "expected": "the stored float32 weights evaluated in float64 (circlefit.numeric.mlp64)",
        "tolerance": tol.to_json(),
        "runtimes": {},
    }
    worst: tuple[float, ParityError] | None = None
    for runtime, (version, runner) in runtimes.items():
        per_set = []
        for name, xy in sets.items():
            blocks = []
            for start, stop in _blocks(name, len(xy)):
                part, want = xy[start:stop], expected[name][start:stop]
                got = _run_checked(runner, runtime, name, part)
                blocks.append((start, part, want, got, _compare(got, want, tol)))
            failing = sum(b[4]["failing"] for b in blocks)
            start, part, want, got, r = max(blocks, key=lambda b: b[4]["max_tol_ratio"])
            if failing and (worst is None or r["max_tol_ratio"] > worst[0]):
                error = _fail(runtime, name, part, want, got, r, tol, failing, len(xy), start)
                worst = (r["max_tol_ratio"], error)
            per_set += [b[4] for b in blocks]
        record["runtimes"][runtime] = {"version": version, "points": sum(r["points"] for r in per_set)}
        log.info(
            "parity vs float64, %s: %d points, max |diff| %.3g, max rel diff %.3g, max diff/tolerance %.3g",
            runtime, sum(r["points"] for r in per_set), *(max(r[k] for r in per_set)
            for k in ("max_abs_diff", "max_rel_diff", "max_tol_ratio")),
        )  # fmt: skip
    if worst is not None:
        raise worst[1]
    for r in record["runtimes"].values():
        r["verdict"] = "within tolerance"
    return record
