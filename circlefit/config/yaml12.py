"""A PyYAML loader that reads YAML as DVC does (ruamel.yaml, YAML 1.2 core schema); builds no objects.

PyYAML's own loaders implement YAML 1.1, where `1e-3` is a string, `064` is 52, `no` is false
and a duplicate key silently wins. DVC reads params.yaml with ruamel.yaml as YAML 1.2, and what a
stage runs with must equal what `dvc params diff` shows (tests/test_config.py compares the two).
So this loader keeps PyYAML's scanner, parser and composer, and swaps in:

- the YAML 1.2 implicit resolvers, as ruamel.yaml writes them (ruamel/yaml/resolver.py, 1.2 rows):
  bool is only true/false, ints and floats take 1.2's spellings (`0o17`, `.5`, `1_0`);
- ruamel's 1.2 int and float construction: `064` is decimal 64, `_` is dropped;
- a mapping constructor that refuses duplicate keys, naming the line of the second one.

The constructor is PyYAML's SafeConstructor: only YAML's standard tags, never a `!!python/…` one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from circlefit.errors import ConfigError

__all__ = ["Loader", "load"]

_TAG = "tag:yaml.org,2002:"


class _Resolver(BaseResolver):
    """YAML 1.2 core schema plus the timestamp, merge and value rows ruamel.yaml keeps for 1.2."""


for _tag, _regexp, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        "float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        "-+0123456789.",
    ),
    ("int", r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$", "-+0123456789"),
    ("merge", r"^(?:<<)$", "<"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (
        "timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        "0123456789",
    ),
    ("value", r"^(?:=)$", "="),  # no constructor: an error, as in ruamel.yaml
]:
    _Resolver.add_implicit_resolver(_TAG + _tag, re.compile(_regexp, re.X), list(_first))


class _Constructor(SafeConstructor):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _TAG + "merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; the base constructor reports it
                continue
            if duplicate:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark, f'found duplicate key "{key}"', key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        """YAML 1.2: `0o17` is octal, a plain leading zero is not (`064` is 64); `_` separates digits."""
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text[0] == "-" else 1
        text = text.lstrip("+-")
        for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
            if text.startswith(prefix):
                return sign * int(text[2:], base)
        return sign * int(text)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = str(self.construct_scalar(node)).replace("_", "").lower()
        sign = -1.0 if text[0] == "-" else 1.0
        text = text.lstrip("+-")
        if text == ".inf":
            return sign * float("inf")
        if text == ".nan":
            return float("nan")
        return sign * float(text)


_Constructor.add_constructor(_TAG + "int", _Constructor.construct_yaml_int)
_Constructor.add_constructor(_TAG + "float", _Constructor.construct_yaml_float)


class Loader(Reader, Scanner, Parser, Composer, _Constructor, _Resolver):
    """PyYAML's pipeline with YAML 1.2 resolution and construction, as DVC reads params files."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


def load(text: str, source: str) -> Any:
    """The single document in `text` (None if empty); unreadable YAML is a ConfigError naming `source`, key and line."""
    loader = Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        # A quoted scalar or flow list left open is reported where the parser gives up (often the
        # next key); the key it belongs to is where it started.
        started = (e.context or "").startswith(("while scanning a", "while parsing a flow"))
        at = e.context_mark if started and e.context_mark else mark
        line = _unclosed_quote(text, at.line) if at else None  # a quote can run on to close in a later comment
        key = _key_at(text, at.line if line is None else line) if at else ""
        where = f" at {key}{where}" if key else where
        problem = " ".join((e.problem or e.context or "malformed YAML").split())
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as e:  # e.g. a control character (ReaderError: no line, a position)
        raise ConfigError(f"{source}: malformed YAML: {' '.join(str(e).split())}") from None
    except ValueError as e:  # e.g. an integer literal over Python's 4300-digit conversion limit
        raise ConfigError(f"{source}: unreadable YAML value: {e}") from None
    finally:
        loader.dispose()


_KEY_LINE = re.compile(r"^([ \t]*)([^\s#'\"\[{&*!|>%@`-][^:#]*?)[ \t]*:(?:[ \t]+(.*))?$")


def _unclosed_quote(text: str, last: int) -> int | None:
    """The first line up to `last` (0-based) whose value opens a quote it does not close, if any."""
    for i, raw in enumerate(text.splitlines()[: last + 1]):
        m = _KEY_LINE.match(raw)
        value = (m.group(3) or "").strip() if m else ""
        if value[:1] in ("'", '"') and value[0] not in value[1:]:
            return i
    return None


def _key_at(text: str, line: int) -> str:
    """The dotted key of block-style YAML `text` at 0-based `line` (by indentation), for error messages."""
    parents: list[tuple[int, str]] = []
    key, previous = "", 0
    for i, raw in enumerate(text.splitlines()[: line + 1]):
        m = _KEY_LINE.match(raw)
        if m is None:
            continue
        indent, name, value = len(m.group(1)), m.group(2).strip(), (m.group(3) or "").strip()
        if "\t" in m.group(1):  # YAML has no tab indentation: read it as the level of the key line before
            indent = previous
        previous = indent
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if i == line:
            key = name
        elif not value or value.startswith("#"):  # `section:` opens a mapping
            parents.append((indent, name))
    return ".".join([p for _, p in parents] + ([key] if key else []))
