"""The params schema: one frozen pydantic model per params.yaml section; a field's comment is its help.

Ranges are Field constraints and rules between fields are validators; `circlefit.config.messages`
turns what pydantic reports into one line naming the file, the dotted key and the value.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "DataConfig",
    "DistributedConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "ExportConfig",
    "GradientConfig",
    "LstsqConfig",
    "ModelConfig",
    "NoiseConfig",
    "NormalizeConfig",
    "OodConfig",
    "Params",
    "SplitConfig",
    "TrainConfig",
]


def _widen(value: Any) -> Any:
    """An int where a float goes (`r_max: 20`) is that float; beyond float range it is ±inf, refused as such."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _fits_64_bits(value: Any) -> Any:
    # YAML ints are unbounded; numpy, torch and float() are not. Checked before any range, so a
    # 400-digit integer is reported by its size, not printed.
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise PydanticCustomError(
            "int_64", "must fit in 64 bits, got an integer of {bits} bits", {"bits": value.bit_length()}
        )
    return value


Real = Annotated[float, BeforeValidator(_widen)]
Int = Annotated[int, BeforeValidator(_fits_64_bits)]


def _rule(key: str, msg: str) -> PydanticCustomError:
    """A rule across fields, broken at `key` (relative to its section); `{at}` in `msg` is the section prefix."""
    return PydanticCustomError("rule", "{key} {msg}", {"key": key, "msg": msg})


class _Section(BaseModel):
    """A params section: frozen, unknown keys refused, types as YAML gives them (no coercion), no NaN or Inf."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoiseConfig(_Section):
    xy: Real = Field(ge=0)  # std of Gaussian noise added to stored coordinates
    label: Real = Field(ge=0)  # std of Gaussian noise added to labels


class SplitConfig(_Section):
    train: Real = Field(gt=0, lt=1)
    val: Real = Field(gt=0, lt=1)
    test: Real = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise _rule("", f"fractions must sum to 1, got {total:g}")
        return self

    def counts(self, rows: int) -> dict[str, int]:
        """Rows per split out of `rows`: train and val are rounded, test takes the rest."""
        n_train, n_val = round(rows * self.train), round(rows * self.val)
        return {"train": n_train, "val": n_val, "test": rows - n_train - n_val}


class OodConfig(_Section):
    n: Int = Field(gt=0)  # points in the out-of-domain ring
    width: Real = Field(gt=0)  # ring spans [R, R * (1 + width)], R the training radius


class DataConfig(_Section):
    seed: Int = Field(ge=0)
    source: Literal["disk", "annulus", "circle", "tutorial"]
    # Rows before splitting (ignored by `tutorial`, which has its own points). At most 10⁹, so a
    # typo of extra zeros fails here instead of filling the disk.
    n: Int = Field(gt=0, le=10**9)
    r_min: Real = Field(ge=0)  # annulus inner radius
    r_max: Real = Field(gt=0)  # disk / annulus outer radius
    radius: Real = Field(gt=0)  # circle radius
    noise: NoiseConfig
    split: SplitConfig
    ood: OodConfig

    @model_validator(mode="after")
    def _rows_and_radii(self) -> DataConfig:
        if self.source == "annulus" and not self.r_min < self.r_max:
            raise _rule("r_min", f"must be < {{at}}r_max ({self.r_max:g}), got {self.r_min:g}")
        if self.source == "tutorial":  # no held-out split: see circlefit.data.generate
            return self
        for name, count in self.split.counts(self.n).items():
            if count < 1:
                raise _rule(f"split.{name}", f"leaves {count} rows of {self.n}; raise {{at}}n or the fraction")
        return self


class NormalizeConfig(_Section):
    min_std: Real = Field(gt=0)  # a std at or below this × max(1, |mean|) is an error, never divided by


class ModelConfig(_Section):
    # strict=False for the list only: YAML gives a list where the tuple goes; its items stay strict ints.
    hidden: tuple[Annotated[Int, Field(gt=0)], ...] = Field(min_length=1, strict=False)
    activation: Literal["relu", "gelu", "silu", "tanh"]


class LstsqConfig(_Section):
    """train.lstsq (circlefit.train.lstsq): hinges placed from the data, output layer by least squares.

    Candidates: every K in `directions` (one set of normal equations each) × every `edge` × every
    `smoothness` (one penalized solve each); the lowest validation loss wins.
    """

    directions: tuple[Annotated[Int, Field(gt=0, le=4096)], ...] = Field(min_length=1, strict=False)
    margin: Real = Field(ge=0, lt=1)  # margin knots reach this fraction of the data's range past it
    margin_knots: Int = Field(ge=0, le=64)  # knots per margin zone (none where it cannot hold them)
    # Thin knots: fewer rows on their thinner side than edge × the direction's mean (or none).
    edge: tuple[Annotated[Real, Field(ge=0, le=1e9)], ...] = Field(min_length=1, strict=False)
    edge_smoothness: Real = Field(ge=0)  # curvature continuation on thin knots: λ of λ·N·∫(g‴)²
    smoothness: tuple[Annotated[Real, Field(ge=0)], ...] = Field(min_length=1, strict=False)  # λ on every pair
    ridge: Real = Field(gt=0, lt=1e-6)  # damping of every hinge weight (never the bias), relative
    select_rows: Int = Field(gt=0)  # candidates are compared on the first rows of train and val, this many

    @model_validator(mode="after")
    def _bounded(self) -> LstsqConfig:
        count = len(self.directions) * len(self.edge) * len(self.smoothness)
        if count > 64:
            raise _rule("directions", f"× {{at}}edge × {{at}}smoothness make {count} candidates; at most 64")
        return self


class EarlyStoppingConfig(_Section):
    patience: Int = Field(ge=0)  # evaluations without improvement before stopping; 0 = off
    min_delta: Real = Field(ge=0, lt=1)  # relative improvement of val loss that counts


class GradientConfig(_Section):
    """train.gradient (circlefit.train.gradient): PyTorch's init, a first-order optimizer, then L-BFGS."""

    optimizer: Literal["adam", "adamw", "radam", "sgd"]
    lr: Real = Field(gt=0)
    weight_decay: Real = Field(ge=0)
    schedule: Literal["constant", "cosine", "onecycle"]
    epochs: Int = Field(ge=0)
    batch_size: Int = Field(ge=0)  # 0 = full batch
    lbfgs_steps: Int = Field(ge=0)  # full-batch L-BFGS refinement after the first phase
    eval_every: Int = Field(gt=0)  # epochs between validation checks (and loss-curve rows)
    early_stopping: EarlyStoppingConfig
    precision: Literal["fp32", "tf32", "bf16"]  # tf32: CUDA matmuls only; bf16: autocast on any device
    cuda_graph: Literal["auto", "always", "never"]  # capture the full-batch step (circlefit.train.fast_step)


class DistributedConfig(_Section):
    enabled: bool  # run the train stage as torchrun ranks; see circlefit.train.launch
    nproc_per_node: Int = Field(gt=0)  # ranks on this machine; each trains on its shard of the train split
    backend: Literal["auto", "gloo", "nccl"]  # auto: nccl on CUDA, gloo on CPU


class TrainConfig(_Section):
    method: Literal["lstsq", "gradient"]  # which section below trains the model
    device: Literal["auto", "cpu", "cuda"]  # cuda without a GPU is an error, never a fallback
    threads: Int = Field(gt=0)  # CPU threads
    seed: Int = Field(ge=0)  # the gradient method's initial weights and batch order
    lstsq: LstsqConfig
    gradient: GradientConfig
    distributed: DistributedConfig

    @model_validator(mode="after")
    def _trains_something(self) -> TrainConfig:
        g = self.gradient
        if self.method == "gradient" and g.epochs + g.lbfgs_steps == 0:
            raise _rule("gradient.epochs", "and {at}gradient.lbfgs_steps are both 0: nothing would be trained")
        if self.distributed.backend == "nccl" and self.device == "cpu":
            raise _rule("distributed.backend", "is nccl, which needs CUDA, but {at}device is cpu; use gloo or auto")
        return self


class EvaluateConfig(_Section):
    bands: Int = Field(gt=0)  # radius bands for error-by-radius
    plot_points: Int = Field(gt=0)  # rows written to the predicted-vs-true plot
    batch_size: Int = Field(gt=0)  # rows per block of predictions (memory stays flat at any n)


class ExportConfig(_Section):
    opset: Int = Field(ge=14, le=23)  # what torch.onnx.export(dynamo=True) can write
    probes: Int = Field(gt=0)  # probe vectors shipped for consumers' tests
    parity_random: Int = Field(gt=0)  # random points in the parity check
    parity_large_batch: Int = Field(gt=0)
    rtol: Real = Field(gt=0)  # parity tolerance, relative to the output's scale
    seed: Int = Field(ge=0)  # draws the random parity points


class Params(_Section):
    data: DataConfig
    normalize: NormalizeConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    export: ExportConfig
