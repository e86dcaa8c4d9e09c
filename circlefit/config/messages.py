"""pydantic's validation errors in the project's one shape: `params.yaml: train.gradient.lr must be > 0, got 0`.

The first error wins, an unknown key before any other (it explains the rest); cross-field rules
(`_rule` in circlefit.config.schema) name the key they break.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = ["describe"]

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


def describe(e: ValidationError, root: type[BaseModel], prefix: str) -> str:
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
