"""One typed, validated view of params.yaml, parsed exactly as DVC parses it (YAML 1.2).

`load_params(path)` is the one way in: read (`yaml12`), validate (`schema`), and on a bad value
one line naming the file, the dotted key and the value (`messages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from circlefit.config import schema, yaml12
from circlefit.config.messages import describe
from circlefit.config.schema import *  # noqa: F403 - the sections' models, re-exported: schema.__all__
from circlefit.config.schema import Params
from circlefit.errors import ConfigError

__all__ = ["PARAMS_FILE", "ConfigError", "as_dict", "from_mapping", "load_params", "parse_params", "replace"]
__all__ += schema.__all__

PARAMS_FILE = "params.yaml"  # the default; every error names the file the user gave instead
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
        raise ConfigError(f"{source}: {describe(e, cls, prefix)}") from None


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
