"""Rewrite the bad-params corpus from the repo's params.yaml: `python tests/bad_params/regenerate.py`.

Each file is params.yaml with ONE defect, headed by `# expect: <dotted key>` (the key the error
must name; `(file)` where the defect has no key) and `# defect: <what>`. The files are committed;
tests/test_bad_params.py reads them and checks they still differ from params.yaml in one place.
Run this after changing params.yaml.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARAMS = HERE.parents[1] / "params.yaml"
KEY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z_][\w]*):(?P<gap> *)(?P<value>[^#\n]*?)(?P<comment> *#.*)?$")

Lines = list[str]
Edit = Callable[[Lines], Lines]


def paths(lines: Lines) -> dict[str, int]:
    """Dotted key -> line index, by indentation (params.yaml is plain block style)."""
    out: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([s for _, s in stack] + [m["name"]])
        out[dotted] = i
        if not m["value"]:
            stack.append((indent, m["name"]))
    return out


def set_value(key: str, value: str) -> Edit:
    def edit(lines: Lines) -> Lines:
        i = paths(lines)[key]
        m = KEY.match(lines[i])
        assert m and m["value"], key
        lines[i] = f"{m['indent']}{m['name']}:{m['gap'] or ' '}{value}{m['comment'] or ''}"
        return lines

    return edit


def rename(key: str, new: str) -> Edit:
    def edit(lines: Lines) -> Lines:
        i = paths(lines)[key]
        name = key.rsplit(".", 1)[-1]
        lines[i] = lines[i].replace(f"{name}:", f"{new}:", 1)
        return lines

    return edit


def insert_after(key: str, text: str) -> Edit:
    """Insert `text` (indented like `key`'s line) after `key`'s line."""

    def edit(lines: Lines) -> Lines:
        i = paths(lines)[key]
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        lines.insert(i + 1, " " * indent + text)
        return lines

    return edit


def insert_child(section: str, text: str) -> Edit:
    """Insert `text` as the first key of mapping `section`."""

    def edit(lines: Lines) -> Lines:
        i = paths(lines)[section]
        child = lines[i + 1]
        indent = len(child) - len(child.lstrip(" "))
        lines.insert(i + 1, " " * indent + text)
        return lines

    return edit


def delete(key: str) -> Edit:
    def edit(lines: Lines) -> Lines:
        del lines[paths(lines)[key]]
        return lines

    return edit


def replace_block(key: str, text: str) -> Edit:
    """Replace mapping `key` (its line and the more-indented lines under it) by one line `text`."""

    def edit(lines: Lines) -> Lines:
        i = paths(lines)[key]
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        end = i + 1
        while end < len(lines) and len(lines[end]) - len(lines[end].lstrip(" ")) > indent:
            end += 1
        lines[i:end] = [" " * indent + text]
        return lines

    return edit


def append(text: str) -> Edit:
    return lambda lines: [*lines, text]


def replace_line(key: str, fn: Callable[[str], str]) -> Edit:
    def edit(lines: Lines) -> Lines:
        i = paths(lines)[key]
        lines[i] = fn(lines[i])
        return lines

    return edit


# (file name, dotted key the error must name, what is wrong, edit of params.yaml's lines)
CORPUS: list[tuple[str, str, str, Edit]] = [
    # unknown or misspelled keys, at every level
    ("unknown-top-level.yaml", "seed", "a stray top-level key no stage declares", append("seed: 1")),
    ("misspelled-section.yaml", "trian", "section train misspelled", rename("train", "trian")),
    ("misspelled-data-seed.yaml", "data.sead", "data.seed misspelled", rename("data.seed", "sead")),
    (
        "unknown-data-noise-key.yaml",
        "data.noise.xyz",
        "unknown key in data.noise",
        insert_child("data.noise", "xyz: 0.1"),
    ),
    ("misspelled-split.yaml", "data.split.tran", "data.split.train misspelled", rename("data.split.train", "tran")),
    ("misspelled-ood-width.yaml", "data.ood.widht", "data.ood.width misspelled", rename("data.ood.width", "widht")),
    (
        "misspelled-min-std.yaml",
        "normalize.min_sdt",
        "normalize.min_std misspelled",
        rename("normalize.min_std", "min_sdt"),
    ),
    ("misspelled-hidden.yaml", "model.hiden", "model.hidden misspelled", rename("model.hidden", "hiden")),
    (
        "renamed-lr.yaml",
        "train.gradient.learning_rate",
        "train.gradient.lr spelled out",
        rename("train.gradient.lr", "learning_rate"),
    ),
    (
        "flat-gradient-key.yaml",
        "train.epochs",
        "a train.gradient key where it used to be, directly under train",
        insert_after("train.seed", "epochs: 1000"),
    ),
    (
        "misspelled-patience.yaml",
        "train.gradient.early_stopping.patiense",
        "nested key misspelled",
        rename("train.gradient.early_stopping.patience", "patiense"),
    ),
    ("misspelled-bands.yaml", "evaluate.band", "evaluate.bands misspelled", rename("evaluate.bands", "band")),
    (
        "unknown-export-key.yaml",
        "export.opset_version",
        "unknown key in export",
        insert_after("export.opset", "opset_version: 18"),
    ),
    ("missing-lr.yaml", "train.gradient.lr", "a required key deleted", delete("train.gradient.lr")),
    # wrong types
    ("quoted-int.yaml", "data.n", "a number in quotes", set_value("data.n", '"8192"')),
    ("float-threads.yaml", "train.threads", "float for an int", set_value("train.threads", "2.5")),
    ("scalar-hidden.yaml", "model.hidden", "scalar for a list", set_value("model.hidden", "256")),
    (
        "string-in-hidden.yaml",
        "model.hidden[1]",
        "string item in an int list",
        set_value("model.hidden", '[256, "64"]'),
    ),
    ("scalar-for-mapping.yaml", "data.noise", "scalar for a mapping", replace_block("data.noise", "noise: 0.0")),
    ("list-lr.yaml", "train.gradient.lr", "list for a number", set_value("train.gradient.lr", "[0.01]")),
    ("bool-bands.yaml", "evaluate.bands", "bool for an int", set_value("evaluate.bands", "true")),
    ("int-activation.yaml", "model.activation", "number for a choice", set_value("model.activation", "1")),
    ("capitalized-source.yaml", "data.source", "choice in the wrong case", set_value("data.source", "Disk")),
    # out of range
    ("zero-n.yaml", "data.n", "data.n 0", set_value("data.n", "0")),
    ("negative-r-max.yaml", "data.r_max", "negative radius", set_value("data.r_max", "-20.0")),
    ("split-sum.yaml", "data.split", "split fractions sum to 1.1", set_value("data.split.test", "0.2")),
    ("zero-lr.yaml", "train.gradient.lr", "lr 0", set_value("train.gradient.lr", "0")),
    ("unknown-method.yaml", "train.method", "a method that does not exist", set_value("train.method", "lsq")),
    (
        "empty-directions.yaml",
        "train.lstsq.directions",
        "no candidate layout",
        set_value("train.lstsq.directions", "[]"),
    ),
    (
        "zero-direction.yaml",
        "train.lstsq.directions[1]",
        "a layout of 0 directions",
        set_value("train.lstsq.directions", "[3, 0]"),
    ),
    (
        "margin-1.yaml",
        "train.lstsq.margin",
        "knots past the data by its whole range",
        set_value("train.lstsq.margin", "1.0"),
    ),
    ("zero-ridge.yaml", "train.lstsq.ridge", "no damping: singular systems", set_value("train.lstsq.ridge", "0")),
    (
        "negative-smoothness.yaml",
        "train.lstsq.smoothness[1]",
        "a negative penalty",
        set_value("train.lstsq.smoothness", "[0.0, -1.0e-12]"),
    ),
    (
        "scalar-edge.yaml",
        "train.lstsq.edge",
        "a number where the candidate list goes",
        set_value("train.lstsq.edge", "0.25"),
    ),
    (
        "too-many-candidates.yaml",
        "train.lstsq.directions",
        "6 × 1 × 11 = 66 candidates, more than the 64 that bound the train stage",
        set_value(
            "train.lstsq.smoothness",
            "[0.0, 1.0e-15, 1.0e-14, 1.0e-13, 1.0e-12, 1.0e-11, 1.0e-10, 1.0e-9, 1.0e-8, 1.0e-7, 1.0e-6]",
        ),
    ),
    ("zero-threads.yaml", "train.threads", "no threads", set_value("train.threads", "0")),
    (
        "old-opset.yaml",
        "export.opset",
        "an opset the exporter cannot write (below 14)",
        set_value("export.opset", "13"),
    ),
    (
        "min-delta-1.5.yaml",
        "train.gradient.early_stopping.min_delta",
        "relative delta >= 1",
        set_value("train.gradient.early_stopping.min_delta", "1.5"),
    ),
    ("zero-min-std.yaml", "normalize.min_std", "min_std 0", set_value("normalize.min_std", "0")),
    ("zero-width-layer.yaml", "model.hidden[0]", "a layer of width 0", set_value("model.hidden", "[0]")),
    ("negative-seed.yaml", "data.seed", "negative seed", set_value("data.seed", "-1")),
    ("huge-seed.yaml", "train.seed", "seed beyond 64 bits", set_value("train.seed", "18446744073709551616")),
    # non-finite
    ("nan-lr.yaml", "train.gradient.lr", "NaN", set_value("train.gradient.lr", ".nan")),
    ("inf-r-max.yaml", "data.r_max", "Inf", set_value("data.r_max", ".inf")),
    ("minus-inf-label-noise.yaml", "data.noise.label", "-Inf", set_value("data.noise.label", "-.inf")),
    (
        "overflow-weight-decay.yaml",
        "train.gradient.weight_decay",
        "1e400 overflows to inf",
        set_value("train.gradient.weight_decay", "1.0e+400"),
    ),
    # YAML traps (read as YAML 1.2, exactly as DVC reads them)
    (
        "no-device.yaml",
        "train.device",
        "`no` is the string 'no' (YAML 1.1 would say false)",
        set_value("train.device", "no"),
    ),
    ("off-noise.yaml", "data.noise.xy", "`off` is the string 'off', not 0", set_value("data.noise.xy", "off")),
    (
        "exp-epochs.yaml",
        "train.gradient.epochs",
        "1e3 is the float 1000.0, not an int",
        set_value("train.gradient.epochs", "1e3"),
    ),
    ("exp-n.yaml", "data.n", "8.192e3 is a float", set_value("data.n", "8.192e3")),
    ("comma-n.yaml", "data.n", "8,192 is a string", set_value("data.n", "8,192")),
    (
        "quoted-exp-lr.yaml",
        "train.gradient.lr",
        "'1e-3' in quotes is a string",
        set_value("train.gradient.lr", "'1e-3'"),
    ),
    (
        "octal-split.yaml",
        "data.split.val",
        "010 is 10 in YAML 1.2 (8 in YAML 1.1): out of range",
        set_value("data.split.val", "010"),
    ),
    (
        "plain-nan-lr.yaml",
        "train.gradient.lr",
        "plain `nan` is a string in YAML 1.2",
        set_value("train.gradient.lr", "nan"),
    ),
    (
        "duplicate-key.yaml",
        "train.gradient.lr",
        "train.gradient.lr given twice",
        insert_after("train.gradient.lr", "lr: 0.5"),
    ),
    ("duplicate-section.yaml", "data", "section data given twice", append("data:\n  n: 64")),
    # malformed
    ("mapping-in-value.yaml", "train.gradient.lr", "a second colon", set_value("train.gradient.lr", "0.01: 0.02")),
    ("unclosed-list.yaml", "model.hidden", "a list left open", set_value("model.hidden", "[256")),
    ("unclosed-quote.yaml", "train.device", "a quote left open", set_value("train.device", "'cpu")),
    (
        "tab-indent.yaml",
        "train.gradient.lr",
        "a tab before a key",
        replace_line("train.gradient.lr", lambda s: "\t" + s.lstrip()),
    ),
    (
        "over-indented.yaml",
        "train.gradient.lr",
        "a key indented one space too far",
        replace_line("train.gradient.lr", lambda s: " " + s),
    ),
    # code in data: a tag that runs a shell command if the file is loaded unsafely (yaml.unsafe_load)
    (
        "python-tag.yaml",
        "train.device",
        "a !!python tag that would run `touch` if loaded unsafely",
        set_value("train.device", '!!python/object/apply:os.system ["touch circlefit-yaml-sentinel"]'),
    ),
    # the machine
    ("cuda-without-gpu.yaml", "train.device", "cuda on a machine without CUDA", set_value("train.device", "cuda")),
]

# Defects of the whole file: no key to name, only the file. (name, what, bytes)
WHOLE_FILE: list[tuple[str, str, bytes]] = [
    ("empty.yaml", "an empty file (0 bytes)", b""),
    ("comments-only.yaml", "only comments", b"# expect: (file)\n# defect: only comments\n# data:\n#   n: 8192\n"),
    (
        "top-level-list.yaml",
        "a list, not a mapping",
        b"# expect: (file)\n# defect: a list, not a mapping\n- data\n- train\n",
    ),
    ("not-utf8.yaml", "a Latin-1 byte in a comment", b""),  # params.yaml + a Latin-1 comment, built below
]


def header(key: str, what: str) -> str:
    return f"# expect: {key}\n# defect: {what}\n"


def main() -> int:
    text = PARAMS.read_text(encoding="utf-8")
    lines = text.splitlines()
    written = 0
    for old in HERE.glob("*.yaml"):
        old.unlink()
    for name, key, what, edit in CORPUS:
        body = "\n".join(edit(list(lines))) + "\n"
        (HERE / name).write_text(header(key, what) + body, encoding="utf-8")
        written += 1
    for name, what, blob in WHOLE_FILE:
        if name == "not-utf8.yaml":
            blob = (header("(file)", what) + text).encode() + "# caf\xe9 au lait\n".encode("latin-1")
        (HERE / name).write_bytes(blob)
        written += 1
    print(f"wrote {written} files to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
