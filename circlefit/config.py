"""One typed, validated view of params.yaml, parsed exactly as DVC parses it (YAML 1.2).

One pydantic model per params.yaml section; a field's comment is its help. Ranges are Field
constraints and rules between fields are validators; `_message` turns pydantic's errors into
one line naming the file, the dotted key and the value: `params.yaml: train.lr must be > 0, got 0`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from circlefit import yaml12
from circlefit.errors import ConfigError

__all__ = [
    "PARAMS_FILE",
    "TUTORIAL_POINTS",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "ExportConfig",
    "LstsqConfig",
    "ModelConfig",
    "NoiseConfig",
    "NormalizeConfig",
    "OodConfig",
    "Params",
    "SplitConfig",
    "TrainConfig",
    "as_dict",
    "from_mapping",
    "load_params",
    "parse_params",
    "replace",
    "split_counts",
]

PARAMS_FILE = "params.yaml"  # the default; every error names the file the user gave instead
TUTORIAL_POINTS = 36


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Fields by position too, in declaration order (`ModelConfig((64,), "relu")`)."""
        if len(args) > len(type(self).model_fields):
            raise TypeError(f"{type(self).__name__} takes {len(type(self).model_fields)} fields, got {len(args)}")
        super().__init__(**dict(zip(type(self).model_fields, args, strict=False)), **kwargs)


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


class OodConfig(_Section):
    n: Int = Field(gt=0)  # points in the out-of-domain ring
    width: Real = Field(gt=0)  # ring spans [R, R * (1 + width)], R the training radius


def split_counts(rows: int, split: SplitConfig) -> dict[str, int]:
    """Rows per split; train and val are rounded, test takes the rest."""
    n_train, n_val = round(rows * split.train), round(rows * split.val)
    return {"train": n_train, "val": n_val, "test": rows - n_train - n_val}


class DataConfig(_Section):
    seed: Int = Field(ge=0)
    source: Literal["disk", "annulus", "circle", "tutorial"]
    # Rows before splitting (ignored by `tutorial`: it has 36). At most 10⁹: every stage holds its
    # split in memory (peak memory per row: BENCHMARKS.md, bench/growth.py), so a typo of extra
    # zeros fails here instead of running out of memory.
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
        for name, count in split_counts(self.n, self.split).items():
            if count < 1:
                raise _rule(f"split.{name}", f"leaves {count} rows of {self.n}; raise {{at}}n or the fraction")
        return self


class NormalizeConfig(_Section):
    min_std: Real = Field(gt=0)  # a std at or below this × max(1, |mean|) is an error, never divided by


class ModelConfig(_Section):
    # strict=False for the list only: YAML gives a list where the tuple goes; its items stay strict ints.
    hidden: tuple[Annotated[Int, Field(gt=0)], ...] = Field(min_length=1, strict=False)
    activation: Literal["relu", "gelu", "silu", "tanh"]


class EarlyStoppingConfig(_Section):
    patience: Int = Field(ge=0)  # evaluations without improvement before stopping; 0 = off
    min_delta: Real = Field(ge=0, lt=1)  # relative improvement of val loss that counts


class DistributedConfig(_Section):
    enabled: bool  # run the train stage as torchrun ranks (DDP); see circlefit.launch
    nproc_per_node: Int = Field(gt=0)  # ranks on this machine; each trains on its shard of the train split
    backend: Literal["auto", "gloo", "nccl"]  # auto: nccl on CUDA, gloo on CPU


class LstsqConfig(_Section):
    """train.method lstsq (circlefit.lstsq): hinges placed from the data, output layer by least squares."""

    # Candidate layouts (evenly spaced hinge directions); the lowest validation loss picks one.
    directions: tuple[Annotated[Int, Field(gt=0, le=4096)], ...] = Field(min_length=1, strict=False)
    margin: Real = Field(ge=0, lt=1)  # knots reach this fraction of the data's range past it on each side
    smoothness: Real = Field(ge=0)  # penalty on curvature changes between neighbouring edge knots (relative)
    edge: Real = Field(ge=0, lt=0.5)  # knots past the data or within this fraction of its range from the ends
    ridge: Real = Field(gt=0, lt=1)  # damping of every output weight (relative)


class TrainConfig(_Section):
    method: Literal["lstsq", "gradient"]  # gradient: PyTorch's init, `optimizer`, then L-BFGS
    lstsq: LstsqConfig
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["fp32", "tf32", "bf16"]
    cuda_graph: Literal["auto", "always", "never"]  # capture the full-batch step (circlefit.fast_step)
    threads: Int = Field(gt=0)
    seed: Int = Field(ge=0)
    optimizer: Literal["adam", "adamw", "radam", "sgd"]
    lr: Real = Field(gt=0)
    weight_decay: Real = Field(ge=0)
    schedule: Literal["constant", "cosine", "onecycle"]
    epochs: Int = Field(ge=0)
    batch_size: Int = Field(ge=0)  # 0 = full batch
    lbfgs_steps: Int = Field(ge=0)  # full-batch L-BFGS refinement after the first phase
    eval_every: Int = Field(gt=0)  # epochs between validation checks (and loss-curve rows)
    early_stopping: EarlyStoppingConfig
    distributed: DistributedConfig

    @model_validator(mode="after")
    def _trains_something(self) -> TrainConfig:
        if self.method == "gradient" and self.epochs + self.lbfgs_steps == 0:
            raise _rule("epochs", "and {at}lbfgs_steps are both 0: nothing would be trained")
        if self.distributed.backend == "nccl" and self.device == "cpu":
            raise _rule("distributed.backend", "is nccl, which needs CUDA, but {at}device is cpu; use gloo or auto")
        return self


class EvaluateConfig(_Section):
    bands: Int = Field(gt=0)  # radius bands for error-by-radius
    plot_points: Int = Field(gt=0)  # rows written to the predicted-vs-true plot
    batch_size: Int = Field(gt=0)


class ExportConfig(_Section):
    opset: Int = Field(ge=13, le=23)
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


_M = TypeVar("_M", bound=BaseModel)


def load_params(path: str | Path) -> Params:
    """Read, parse (as DVC does) and validate a params file; errors name `path` as given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return parse_params(text, str(path))


def parse_params(text: str, source: str = PARAMS_FILE) -> Params:
    raw = yaml12.load(text, source)
    if raw is None or raw == {}:
        raise ConfigError(f"{source}: file is empty; expected the sections {', '.join(Params.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    return from_mapping(Params, raw, source)


def from_mapping(cls: type[_M], raw: Any, source: str = PARAMS_FILE, prefix: str = "") -> _M:
    """Validate a parsed mapping as model `cls` (found at dotted `prefix`), naming `source` and the key on error."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_message(e, cls, prefix)}") from None


def replace(cfg: _M, **changes: Any) -> _M:
    """A copy of config object `cfg` with `changes`, validated like a params file (dataclasses.replace, checked)."""
    return from_mapping(type(cfg), {**dict(cfg), **changes}, f"replace({type(cfg).__name__})")


def as_dict(obj: Any) -> Any:
    """A plain, JSON-able view of a config object (tuples become lists), keys in declaration order."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, tuple):
        return [as_dict(v) for v in obj]
    return obj


# --- the one formatter: pydantic's errors in the project's shape ------------------------------

_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}
_WANTED = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def _message(e: ValidationError, root: type[BaseModel], prefix: str) -> str:
    """`<dotted key> <what is wrong>, got <value>` for the first error (an unknown key first: it explains the rest)."""
    errors = e.errors(include_url=False)
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    kind, loc, ctx, value = err["type"], tuple(err["loc"]), err.get("ctx", {}), err["input"]
    if kind == "rule":
        at = _dotted(prefix, loc)
        loc += tuple(part for part in ctx["key"].split(".") if part)
        return f"{_dotted(prefix, loc) or '(top level)'} {ctx['msg'].format(at=f'{at}.' if at else '')}"
    return f"{_dotted(prefix, loc) or '(top level)'} {_problem(err, kind, ctx, value, root, loc)}"


def _problem(
    err: ErrorDetails, kind: str, ctx: dict[str, Any], value: Any, root: type[BaseModel], loc: tuple[Any, ...]
) -> str:
    if kind == "missing":
        return "is missing"
    if kind == "extra_forbidden":
        section = _section_at(root, loc[:-1])
        known = f" (expected one of: {', '.join(section.model_fields)})" if section else ""
        return f"is not a known key{known}"
    if kind in _BOUNDS:
        bound, sym = _BOUNDS[kind]
        return f"must be {sym} {_num(ctx[bound])}, got {_num(value)}"
    if kind == "finite_number":
        return f"must be finite, got {value}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}; got {_show(value)}"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s), got {_show(value)}"
    if kind == "int_64":
        return err["msg"]
    wanted = _WANTED.get(kind) or err["msg"][:1].lower() + err["msg"][1:]
    return f"{wanted}, got {_show(value)}"


def _section_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found at `loc` under `root` (for the known keys beside an unknown one)."""
    cls = root
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        cls = sub
    return cls


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) and key else (f".{part}" if key else str(part))
    return key


def _num(v: Any) -> str:
    """Integers in full (10**12 stays 1000000000000), floats short."""
    return str(v) if isinstance(v, int) else f"{v:g}" if isinstance(v, float) else _show(v)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} ({value!r})"[:120]
    return f"{type(value).__name__} {value!r}"
