"""One typed, validated view of params.yaml, parsed exactly as DVC parses it (YAML 1.2)."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EvaluateConfig",
    "ExportConfig",
    "LstsqConfig",
    "ModelConfig",
    "NormalizeConfig",
    "Params",
    "TrainConfig",
    "from_mapping",
    "load_params",
    "parse_params",
]


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file and the dotted key."""


def _c(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A required field with range checks (gt, ge, lt, le, min_len) kept as metadata."""
    return field(default=default, metadata=checks)


@dataclass(frozen=True)
class NoiseConfig:
    xy: float = _c(ge=0)  # std of Gaussian noise added to stored coordinates
    label: float = _c(ge=0)  # std of Gaussian noise added to labels


@dataclass(frozen=True)
class SplitConfig:
    train: float = _c(gt=0, lt=1)
    val: float = _c(gt=0, lt=1)
    test: float = _c(gt=0, lt=1)

    def check(self, key: str) -> None:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise _err(key, f"fractions must sum to 1, got {total:g}")


@dataclass(frozen=True)
class OodConfig:
    n: int = _c(gt=0)  # points in the out-of-domain ring
    width: float = _c(gt=0)  # ring spans [R, R * (1 + width)], R the training radius


@dataclass(frozen=True)
class DataConfig:
    seed: int = _c(ge=0)
    source: Literal["disk", "annulus", "circle", "tutorial"] = _c()
    # Rows before splitting (ignored by `tutorial`: it has 36). At most 10⁹: every stage holds its
    # split in memory (10⁷ rows peak at 812 MiB in training, bench/growth.py; 10⁹ is ~12 GB of
    # float32 on disk alone), so a typo of extra zeros fails here instead of running out of memory.
    n: int = _c(gt=0, le=10**9)
    r_min: float = _c(ge=0)  # annulus inner radius
    r_max: float = _c(gt=0)  # disk / annulus outer radius
    radius: float = _c(gt=0)  # circle radius
    noise: NoiseConfig = _c()
    split: SplitConfig = _c()
    ood: OodConfig = _c()

    def check(self, key: str) -> None:
        if self.source == "annulus" and not self.r_min < self.r_max:
            raise _err(f"{key}.r_min", f"must be < {key}.r_max ({self.r_max:g}), got {self.r_min:g}")
        if self.source == "tutorial":  # no held-out split: see circlefit.data.generate
            return
        for name, count in split_counts(self.n, self.split).items():
            if count < 1:
                raise _err(f"{key}.split.{name}", f"leaves {count} rows of {self.n}; raise {key}.n or the fraction")


TUTORIAL_POINTS = 36


def split_counts(rows: int, split: SplitConfig) -> dict[str, int]:
    """Rows per split; train and val are rounded, test takes the rest."""
    n_train, n_val = round(rows * split.train), round(rows * split.val)
    return {"train": n_train, "val": n_val, "test": rows - n_train - n_val}


@dataclass(frozen=True)
class NormalizeConfig:
    min_std: float = _c(gt=0)  # a std at or below this × max(1, |mean|) is an error, never divided by


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...] = _c(min_len=1, gt=0)
    activation: Literal["relu", "gelu", "silu", "tanh"] = _c()


@dataclass(frozen=True)
class EarlyStoppingConfig:
    patience: int = _c(ge=0)  # evaluations without improvement before stopping; 0 = off
    min_delta: float = _c(ge=0, lt=1)  # relative improvement of val loss that counts


@dataclass(frozen=True)
class DistributedConfig:
    enabled: bool = _c()  # run the train stage as torchrun ranks (DDP); see circlefit.launch
    nproc_per_node: int = _c(gt=0)  # ranks on this machine; each trains on its shard of the train split
    backend: Literal["auto", "gloo", "nccl"] = _c()  # auto: nccl on CUDA, gloo on CPU


@dataclass(frozen=True)
class LstsqConfig:
    """train.method lstsq (circlefit.lstsq): hinges placed from the data, output layer by least squares."""

    directions: tuple[int, ...] = _c(min_len=1, gt=0, le=4096)  # candidate layouts; the validation loss picks one
    margin: float = _c(ge=0, lt=1)  # knots reach this fraction of the data's range past it on each side
    smoothness: float = _c(ge=0)  # penalty on curvature changes between neighbouring edge knots (relative)
    edge: float = _c(ge=0, lt=0.5)  # knots past the data or within this fraction of its range from the ends
    ridge: float = _c(gt=0, lt=1)  # damping of every output weight (relative)


@dataclass(frozen=True)
class TrainConfig:
    method: Literal["lstsq", "gradient"] = _c()  # gradient: PyTorch's init, `optimizer`, then L-BFGS
    lstsq: LstsqConfig = _c()
    device: Literal["auto", "cpu", "cuda"] = _c()
    precision: Literal["fp32", "tf32", "bf16"] = _c()
    cuda_graph: Literal["auto", "always", "never"] = _c()  # capture the full-batch step (circlefit.fast_step)
    threads: int = _c(gt=0)
    seed: int = _c(ge=0)
    optimizer: Literal["adam", "adamw", "radam", "sgd"] = _c()
    lr: float = _c(gt=0)
    weight_decay: float = _c(ge=0)
    schedule: Literal["constant", "cosine", "onecycle"] = _c()
    epochs: int = _c(ge=0)
    batch_size: int = _c(ge=0)  # 0 = full batch
    lbfgs_steps: int = _c(ge=0)  # full-batch L-BFGS refinement after the first phase
    eval_every: int = _c(gt=0)  # epochs between validation checks (and loss-curve rows)
    early_stopping: EarlyStoppingConfig = _c()
    distributed: DistributedConfig = _c()

    def check(self, key: str) -> None:
        if self.method == "gradient" and self.epochs + self.lbfgs_steps == 0:
            raise _err(f"{key}.epochs", "and train.lbfgs_steps are both 0: nothing would be trained")
        if self.distributed.backend == "nccl" and self.device == "cpu":
            raise _err(
                f"{key}.distributed.backend", "is nccl, which needs CUDA, but train.device is cpu; use gloo or auto"
            )


@dataclass(frozen=True)
class EvaluateConfig:
    bands: int = _c(gt=0)  # radius bands for error-by-radius
    plot_points: int = _c(gt=0)  # rows written to the predicted-vs-true plot
    batch_size: int = _c(gt=0)


@dataclass(frozen=True)
class ExportConfig:
    opset: int = _c(ge=13, le=23)
    probes: int = _c(gt=0)  # probe vectors shipped for consumers' tests
    parity_random: int = _c(gt=0)  # random points in the parity check
    parity_large_batch: int = _c(gt=0)
    rtol: float = _c(gt=0)  # parity tolerance, relative to the output's scale
    seed: int = _c(ge=0)  # draws the random parity points


@dataclass(frozen=True)
class Params:
    data: DataConfig = _c()
    normalize: NormalizeConfig = _c()
    model: ModelConfig = _c()
    train: TrainConfig = _c()
    evaluate: EvaluateConfig = _c()
    export: ExportConfig = _c()


_FILE = "params.yaml"
_T = TypeVar("_T")


class _KeyError(Exception):
    def __init__(self, key: str, msg: str) -> None:
        super().__init__(key, msg)
        self.key, self.msg = key, msg


def _err(key: str, msg: str) -> _KeyError:
    return _KeyError(key, msg)


def load_params(path: str | Path) -> Params:
    """Read, parse (as DVC does) and validate a params file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return parse_params(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML with the loader DVC uses, so stages see what `dvc params show` shows."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="safe").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        # A quoted scalar or flow list left open is reported where the parser gives up (often the
        # next key); the key it belongs to is where it started.
        started = (e.context or "").startswith(("while scanning a", "while parsing a flow"))
        at = e.context_mark if started and e.context_mark else mark
        key = _key_at(text, at.line) if at else ""
        where = f" at {key}{where}" if key else where
        problem = (e.problem or e.context or "malformed YAML").strip()
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    except YAMLError as e:
        raise ConfigError(f"{source}: malformed YAML: {e}") from None
    except ValueError as e:  # e.g. an integer literal over Python's 4300-digit conversion limit
        raise ConfigError(f"{source}: unreadable YAML value: {e}") from None


_KEY_LINE = re.compile(r"^([ \t]*)([^\s#'\"\[{&*!|>%@`-][^:#]*?)[ \t]*:(?:[ \t]+(.*))?$")


def _key_at(text: str, line: int) -> str:
    """The dotted key of block-style YAML `text` at 0-based `line` (by indentation), for error messages."""
    parents: list[tuple[int, str]] = []
    key = ""
    for i, raw in enumerate(text.splitlines()[: line + 1]):
        m = _KEY_LINE.match(raw)
        if m is None:
            continue
        indent, name, value = len(m.group(1)), m.group(2).strip(), (m.group(3) or "").strip()
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if i == line:
            key = name
        elif not value or value.startswith("#"):  # `section:` opens a mapping
            parents.append((indent, name))
    return ".".join([p for _, p in parents] + ([key] if key else []))


def parse_params(text: str, source: str = _FILE) -> Params:
    raw = parse_yaml(text, source)
    if raw is None or raw == {}:
        raise ConfigError(f"{source}: file is empty; expected the sections {_names(Params)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    return from_mapping(Params, raw, source)


def from_mapping(cls: type[_T], raw: Any, source: str = _FILE, prefix: str = "") -> _T:
    """Build dataclass `cls` from a parsed mapping, naming `source` and the key on error."""
    try:
        return _build(cls, raw, prefix)
    except _KeyError as e:
        raise ConfigError(f"{source}: {e.key} {e.msg}") from None


def _names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _build(cls: Any, raw: Any, prefix: str) -> Any:
    where = prefix or "(top level)"
    if not isinstance(raw, dict):
        raise _err(where, f"must be a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise _err(_join(prefix, str(key)), f"is not a known key (expected one of: {_names(cls)})")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in raw:
            raise _err(key, "is missing")
        values[name] = _coerce(hints[name], raw[name], key, dict(f.metadata))
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(prefix)
    return obj


def _coerce(tp: Any, value: Any, key: str, checks: dict[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool):
            raise _err(key, f"must be one of {', '.join(map(str, choices))}; got {_show(value)}")
        return value
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _err(key, f"must be a list, got {_show(value)}")
        if len(value) < checks.get("min_len", 0):
            raise _err(key, f"must have at least {checks['min_len']} item(s), got {_show(value)}")
        item_checks = {k: v for k, v in checks.items() if k != "min_len"}
        return tuple(_coerce(item_tp, v, f"{key}[{i}]", item_checks) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise _err(key, f"must be true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _err(key, f"must be an integer, got {_show(value)}")
        if not -(2**63) <= value < 2**63:  # YAML ints are unbounded; numpy, torch and float() are not
            raise _err(key, f"must fit in 64 bits, got an integer of {value.bit_length()} bits")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(key, f"must be a number, got {_show(value)}")
        try:
            value = float(value)
        except OverflowError:  # a YAML int beyond the float range
            value = math.inf if value > 0 else -math.inf
        if not math.isfinite(value):
            raise _err(key, f"must be finite, got {value}")
    elif tp is str:
        if not isinstance(value, str):
            raise _err(key, f"must be a string, got {_show(value)}")
        return value
    else:  # pragma: no cover - a field type this loader was not taught
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    _check_range(value, key, checks)
    return value


_OPS = {"gt": (">", float.__gt__), "ge": (">=", float.__ge__), "lt": ("<", float.__lt__), "le": ("<=", float.__le__)}


def _check_range(value: float, key: str, checks: dict[str, Any]) -> None:
    for name, bound in checks.items():
        if name in _OPS:
            sym, op = _OPS[name]
            if not op(float(value), float(bound)):
                raise _err(key, f"must be {sym} {_num(bound)}, got {_num(value)}")


def _num(v: float) -> str:
    """Integers in full (10**12 stays 1000000000000), floats short."""
    return str(v) if isinstance(v, int) else f"{v:g}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} ({value!r})"[:120]
    return f"{type(value).__name__} {value!r}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def as_dict(obj: Any) -> Any:
    """A plain, JSON-able view of a config object (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [as_dict(v) for v in obj]
    return obj
