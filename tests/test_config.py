"""params.yaml validation: every rejection names the file and the dotted key (and the value)."""

from __future__ import annotations

import datetime
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from circlefit.config import ConfigError, Params, as_dict, load_params, parse_params, yaml12

from conftest import REPO, dvc, git, repo_params

SRC = "configs/my-params.yaml"  # a source name no message could contain by accident
DELETE = object()


class Raw(str):
    """A YAML scalar written verbatim (to reach the parser's corner cases)."""


def render(edits: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> str:
    """The repo's params.yaml as YAML text, with dotted keys set, deleted or written raw."""
    data = base if base is not None else repo_params()
    raws: dict[str, str] = {}
    for i, (dotted, value) in enumerate((edits or {}).items()):
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        if value is DELETE:
            del node[leaf]
        elif isinstance(value, Raw):
            token = f"RAWVALUE{i}X"
            raws[token] = str(value)
            node[leaf] = token
        else:
            node[leaf] = value
    yaml = YAML()
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    text = buf.getvalue()
    for token, raw in raws.items():
        assert token in text
        text = text.replace(token, raw)
    return text


def rejects(text: str, source: str = SRC) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(text, source)
    msg = str(info.value)
    assert msg.startswith(f"{source}: "), msg
    assert "\n" not in msg, msg
    return msg


def leaf_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out += leaf_keys(v, f"{key}.") if isinstance(v, dict) else [key]
    return out


def mapping_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += [f"{prefix}{k}", *mapping_keys(v, f"{prefix}{k}.")]
    return out


# (id, edits, dotted key the message must name, the bad value as the message must show it)
REJECTIONS: list[tuple[str, dict[str, Any], str, str | None]] = [
    # unknown keys, at every depth
    ("typo train.lrr", {"train.gradient.lr": DELETE, "train.gradient.lrr": 0.01}, "train.gradient.lrr", None),
    ("unknown data.noise.xyz", {"data.noise.xyz": 0.1}, "data.noise.xyz", None),
    ("unknown top-level trian", {"trian": {"lr": 0.01}}, "trian", None),
    (
        "unknown train.early_stopping.patient",
        {"train.gradient.early_stopping.patient": 3},
        "train.gradient.early_stopping.patient",
        None,
    ),
    # missing keys
    ("missing train.lr", {"train.gradient.lr": DELETE}, "train.gradient.lr", None),
    ("missing data.noise.label", {"data.noise.label": DELETE}, "data.noise.label", None),
    ("missing section export", {"export": DELETE}, "export", None),
    # wrong types
    ("string for int", {"data.n": "1024"}, "data.n", "'1024'"),
    ("float for int", {"train.threads": 2.5}, "train.threads", "2.5"),
    ("integral float for int", {"data.n": 1024.0}, "data.n", "1024.0"),
    ("bool for int", {"train.gradient.epochs": True}, "train.gradient.epochs", "True"),
    ("bool for float", {"train.gradient.lr": True}, "train.gradient.lr", "True"),
    ("list for scalar", {"train.gradient.lr": [0.01]}, "train.gradient.lr", "[0.01]"),
    ("mapping for scalar", {"train.gradient.lr": {"value": 0.01}}, "train.gradient.lr", "{'value': 0.01}"),
    ("scalar for list", {"model.hidden": 32}, "model.hidden", "32"),
    ("scalar for mapping", {"data.noise": 0.1}, "data.noise", "0.1"),
    ("null for mapping", {"normalize": None}, "normalize", "null"),
    ("null for float", {"train.gradient.lr": Raw("~")}, "train.gradient.lr", "null"),
    ("string in int list", {"model.hidden": [32, "64"]}, "model.hidden[1]", "'64'"),
    ("date for float", {"train.gradient.lr": Raw("2024-01-01")}, "train.gradient.lr", "2024"),
    # out of range
    ("data.n 0", {"data.n": 0}, "data.n", "got 0"),
    ("data.n negative", {"data.n": -5}, "data.n", "got -5"),
    ("data.n above 10**9", {"data.n": 10**12}, "data.n", "must be <= 1000000000, got 1000000000000"),
    ("data.r_max 0", {"data.r_max": 0.0}, "data.r_max", "got 0"),
    ("data.radius negative", {"data.radius": -1.0}, "data.radius", "got -1"),
    ("data.seed negative", {"data.seed": -1}, "data.seed", "got -1"),
    ("negative xy noise", {"data.noise.xy": -0.1}, "data.noise.xy", "got -0.1"),
    ("negative label noise", {"data.noise.label": -1e-3}, "data.noise.label", "got -0.001"),
    ("split fraction 1", {"data.split.train": 1.0}, "data.split.train", "got 1"),
    ("split fraction 0", {"data.split.val": 0.0}, "data.split.val", "got 0"),
    ("split fraction negative", {"data.split.test": -0.1}, "data.split.test", "got -0.1"),
    ("split sum 1.1", {"data.split.test": 0.2}, "data.split", "got 1.1"),
    ("split sum 0.9", {"data.split.train": 0.7}, "data.split", "got 0.9"),
    ("split leaves empty val", {"data.n": 5}, "data.split.val", "leaves 0 rows of 5"),
    ("annulus r_min == r_max", {"data.source": "annulus", "data.r_min": 20.0}, "data.r_min", "got 20"),
    ("annulus r_min > r_max", {"data.source": "annulus", "data.r_min": 25.0}, "data.r_min", "got 25"),
    ("negative r_min", {"data.r_min": -1.0}, "data.r_min", "got -1"),
    ("ood.n 0", {"data.ood.n": 0}, "data.ood.n", "got 0"),
    ("ood.width 0", {"data.ood.width": 0.0}, "data.ood.width", "got 0"),
    ("min_std 0", {"normalize.min_std": 0.0}, "normalize.min_std", "got 0"),
    ("hidden [0]", {"model.hidden": [0]}, "model.hidden[0]", "got 0"),
    ("hidden [64, -1]", {"model.hidden": [64, -1]}, "model.hidden[1]", "got -1"),
    ("hidden []", {"model.hidden": []}, "model.hidden", "[]"),
    ("threads 0", {"train.threads": 0}, "train.threads", "got 0"),
    ("lr 0", {"train.gradient.lr": 0.0}, "train.gradient.lr", "got 0"),
    ("lr -1", {"train.gradient.lr": -1}, "train.gradient.lr", "got -1"),
    ("weight_decay negative", {"train.gradient.weight_decay": -0.01}, "train.gradient.weight_decay", "got -0.01"),
    ("batch_size negative", {"train.gradient.batch_size": -1}, "train.gradient.batch_size", "got -1"),
    ("eval_every 0", {"train.gradient.eval_every": 0}, "train.gradient.eval_every", "got 0"),
    (
        "nothing to train",
        {"train.method": "gradient", "train.gradient.epochs": 0, "train.gradient.lbfgs_steps": 0},
        "train.gradient.epochs",
        "both 0",
    ),
    ("unknown method", {"train.method": "adam"}, "train.method", "got the string 'adam'"),
    ("no layouts", {"train.lstsq.directions": []}, "train.lstsq.directions", "at least 1"),
    ("layout of 0 directions", {"train.lstsq.directions": [3, 0]}, "train.lstsq.directions[1]", "got 0"),
    ("margin 1", {"train.lstsq.margin": 1.0}, "train.lstsq.margin", "got 1"),
    ("ridge 0", {"train.lstsq.ridge": 0}, "train.lstsq.ridge", "got 0"),
    ("smoothness negative", {"train.lstsq.smoothness": [0.0, -1e-6]}, "train.lstsq.smoothness[1]", "got -1e-06"),
    ("edge a scalar", {"train.lstsq.edge": 0.25}, "train.lstsq.edge", "must be a list"),
    ("ridge too big", {"train.lstsq.ridge": 1e-3}, "train.lstsq.ridge", "< 1e-06"),
    ("select_rows 0", {"train.lstsq.select_rows": 0}, "train.lstsq.select_rows", "got 0"),
    (
        "66 candidates",
        {"train.lstsq.smoothness": [0.0, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6]},
        "train.lstsq.directions",
        "make 66 candidates; at most 64",
    ),
    (
        "patience negative",
        {"train.gradient.early_stopping.patience": -1},
        "train.gradient.early_stopping.patience",
        "got -1",
    ),
    (
        "min_delta 1",
        {"train.gradient.early_stopping.min_delta": 1.0},
        "train.gradient.early_stopping.min_delta",
        "got 1",
    ),
    ("nproc_per_node 0", {"train.distributed.nproc_per_node": 0}, "train.distributed.nproc_per_node", "got 0"),
    ("distributed.enabled 1", {"train.distributed.enabled": 1}, "train.distributed.enabled", "int 1"),
    ("backend mpi", {"train.distributed.backend": "mpi"}, "train.distributed.backend", "'mpi'"),
    ("nccl on cpu", {"train.distributed.backend": "nccl"}, "train.distributed.backend", "train.device is cpu"),
    ("evaluate.bands 0", {"evaluate.bands": 0}, "evaluate.bands", "got 0"),
    ("export.opset 12", {"export.opset": 12}, "export.opset", "got 12"),
    ("export.rtol 0", {"export.rtol": 0.0}, "export.rtol", "got 0"),
    # NaN / Inf (YAML 1.2 spellings)
    ("lr .nan", {"train.gradient.lr": Raw(".nan")}, "train.gradient.lr", "nan"),
    ("min_std .NaN", {"normalize.min_std": Raw(".NaN")}, "normalize.min_std", "nan"),
    ("r_max .inf", {"data.r_max": Raw(".inf")}, "data.r_max", "inf"),
    ("label noise -.inf", {"data.noise.label": Raw("-.inf")}, "data.noise.label", "-inf"),
    ("lr 1e400 overflows to inf", {"train.gradient.lr": Raw("1e400")}, "train.gradient.lr", "inf"),
    # invalid choices
    ("device gpu", {"train.device": "gpu"}, "train.device", "'gpu'"),
    ("source square", {"data.source": "square"}, "data.source", "'square'"),
    ("activation ReLU (case)", {"model.activation": "ReLU"}, "model.activation", "'ReLU'"),
    ("optimizer lbfgs", {"train.gradient.optimizer": "lbfgs"}, "train.gradient.optimizer", "'lbfgs'"),
    ("precision fp16", {"train.gradient.precision": "fp16"}, "train.gradient.precision", "'fp16'"),
    ("schedule null", {"train.gradient.schedule": None}, "train.gradient.schedule", "null"),
    # YAML 1.1 habits that YAML 1.2 (and DVC) read differently: strings, not bools/numbers
    ("device no is a string", {"train.device": Raw("no")}, "train.device", "the string 'no'"),
    ("noise off is a string", {"data.noise.xy": Raw("off")}, "data.noise.xy", "the string 'off'"),
    ("plain nan is a string", {"train.gradient.lr": Raw("nan")}, "train.gradient.lr", "the string 'nan'"),
    ("sexagesimal is a string", {"data.n": Raw("1:30")}, "data.n", "the string '1:30'"),
    ("quoted 1e-3 is a string", {"train.gradient.lr": Raw("'1e-3'")}, "train.gradient.lr", "the string '1e-3'"),
    # integers beyond what numpy/torch/float can hold
    ("data.n 10**400", {"data.n": Raw("1" + "0" * 400)}, "data.n", "must fit in 64 bits"),
    ("seed 2**63", {"data.seed": 2**63}, "data.seed", "must fit in 64 bits"),
    ("lr as a 400-digit int", {"train.gradient.lr": Raw("-1" + "0" * 400)}, "train.gradient.lr", "-inf"),
]


@pytest.mark.parametrize(("edits", "key", "value"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS])
def test_rejects_and_names_file_key_value(edits: dict[str, Any], key: str, value: str | None) -> None:
    msg = rejects(render(edits))
    assert f"{SRC}: {key} " in msg, msg
    if value is not None:
        assert value in msg, msg


def test_rejection_table_is_large_and_ids_unique() -> None:
    assert len(REJECTIONS) >= 30
    assert len({c[0] for c in REJECTIONS}) == len(REJECTIONS)


def test_unknown_key_lists_the_expected_keys() -> None:
    msg = rejects(render({"train.gradient.lr": DELETE, "train.gradient.lrr": 0.01}))
    assert "is not a known key" in msg and "lr," in msg, msg


@pytest.mark.parametrize("key", leaf_keys(repo_params()))
def test_every_leaf_key_is_required(key: str) -> None:
    msg = rejects(render({key: DELETE}))
    assert f"{SRC}: {key} is missing" in msg, msg


@pytest.mark.parametrize("section", ["", *mapping_keys(repo_params())])
def test_unknown_key_rejected_at_every_level(section: str) -> None:
    key = f"{section}.bogus_key" if section else "bogus_key"
    msg = rejects(render({key: 1}))
    assert f"{SRC}: {key} is not a known key" in msg, msg


# --- whole-file problems -------------------------------------------------------------------


def test_empty_text() -> None:
    assert "empty" in rejects("")


def test_only_comments() -> None:
    assert "empty" in rejects("# nothing here\n   # still nothing\n")


def test_empty_mapping() -> None:
    assert "empty" in rejects("{}\n")


def test_top_level_list() -> None:
    assert "top level must be a mapping" in rejects("- data\n- train\n")


def test_top_level_scalar() -> None:
    assert "top level must be a mapping" in rejects("params\n")


def test_malformed_yaml_names_the_line() -> None:
    text = render({"train.gradient.lr": Raw("0.01: 0.02")})  # a mapping value where a scalar goes
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "lr: 0.01: 0.02" in s)
    msg = rejects(text)
    assert "malformed YAML" in msg and f"(line {line}, column " in msg, msg


def test_unclosed_bracket_names_a_line() -> None:
    text = render({"train.gradient.lr": Raw("[0.01")})  # reported where the parser gives up: the next line
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "lr: [0.01" in s)
    msg = rejects(text)
    assert f"(line {line + 1}, column " in msg, msg


def test_bad_indentation_names_the_line() -> None:
    lines = render().splitlines()
    i = next(i for i, s in enumerate(lines) if s.strip().startswith("lr:"))
    lines[i] = " " + lines[i]
    msg = rejects("\n".join(lines) + "\n")
    assert "malformed YAML" in msg and f"line {i + 1}," in msg, msg


def test_tab_indentation_names_the_line() -> None:
    lines = render().splitlines()
    i = next(i for i, s in enumerate(lines) if s.strip().startswith("lr:"))
    lines[i] = "\t" + lines[i].strip()
    msg = rejects("\n".join(lines) + "\n")
    assert f"line {i + 1}," in msg, msg


def test_duplicate_key_is_an_error_with_its_line() -> None:
    lines = render().splitlines()
    i = next(i for i, s in enumerate(lines) if s.strip().startswith("lr:"))
    lines.insert(i + 1, lines[i].split("lr:")[0] + "lr: 0.5")  # the same indentation: the same mapping
    msg = rejects("\n".join(lines) + "\n")
    assert "duplicate key" in msg and '"lr"' in msg and f"line {i + 2}," in msg, msg


def test_duplicate_section_is_an_error() -> None:
    text = render() + "train:\n  lr: 0.5\n"
    msg = rejects(text)
    assert "duplicate key" in msg and '"train"' in msg, msg


def test_overlong_integer_literal() -> None:
    msg = rejects(render({"data.n": Raw("9" * 5000)}))
    assert "unreadable YAML value" in msg, msg


# --- load_params: the file on disk ---------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "params.yaml"
    with pytest.raises(ConfigError, match=r"file not found") as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_params(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(render().encode() + b"# \xff\xfe latin junk\n")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_names_the_path_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "exp" / "p.yaml"
    path.parent.mkdir()
    path.write_text(render({"train.threads": 0}))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: train.threads must be > 0, got 0"


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="empty") as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: ")


# --- what is accepted, and as what -------------------------------------------------------


def test_repo_params_load_and_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert as_dict(params) == repo_params()
    with pytest.raises(ValidationError, match="frozen"):
        params.train.gradient.lr = 1.0  # type: ignore[misc]


def test_yaml_1_2_numbers() -> None:
    text = render(
        {
            "train.gradient.lr": Raw("1e-3"),
            "data.n": Raw("064"),
            "data.seed": Raw("0o17"),
            "train.seed": Raw("0x1F"),
            "train.gradient.epochs": Raw("1_000"),
            "data.r_max": Raw("20"),  # an int where a float is expected: widened
        }
    )
    p = parse_params(text, SRC)
    assert p.train.gradient.lr == 0.001 and type(p.train.gradient.lr) is float
    assert p.data.n == 64 and type(p.data.n) is int  # YAML 1.1 (PyYAML) would say 52
    assert p.data.seed == 15 and p.train.seed == 31 and p.train.gradient.epochs == 1000
    assert p.data.r_max == 20.0 and type(p.data.r_max) is float
    assert p.model.hidden == (256,) and isinstance(p.model.hidden, tuple)


def test_tutorial_ignores_split_counts() -> None:
    p = parse_params(render({"data.source": "tutorial", "data.n": 1}), SRC)
    assert p.data.source == "tutorial"


def test_r_min_only_checked_for_annulus() -> None:
    p = parse_params(render({"data.source": "disk", "data.r_min": 30.0}), SRC)
    assert p.data.r_min == 30.0


def test_big_but_valid_values() -> None:
    p = parse_params(render({"data.seed": 2**63 - 1, "train.gradient.lr": Raw("1" + "0" * 300)}), SRC)
    assert p.data.seed == 2**63 - 1 and p.train.gradient.lr == 1e300


# --- the stage sees what DVC sees ----------------------------------------------------------

DVC_TRAPS = {
    "train.gradient.lr": Raw("1e-3"),  # PyYAML: the string '1e-3'
    "data.n": Raw("064"),  # PyYAML: 52 (octal)
    "data.seed": Raw("0o17"),  # PyYAML: the string '0o17'
    "train.seed": Raw("0x1F"),
    "train.gradient.epochs": Raw("1_0"),  # PyYAML: 10 as well; YAML 1.2 core would say string
    "data.r_max": Raw("2.0e+1"),
    "data.noise.xy": Raw("0"),
}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _dvc_params(repo: Path) -> dict[str, Any]:
    shown = json.loads(dvc(repo, "params", "diff", "--all", "--json").stdout)
    return {k: v["new"] for k, v in shown["params.yaml"].items()}


def test_stage_view_equals_dvc_params(project, small_params) -> None:
    repo = project()
    (repo / "params.yaml").write_text(render(DVC_TRAPS, base=small_params))
    git(repo, "commit", "-qam", "yaml 1.2 traps")
    ours = _flatten(as_dict(load_params(repo / "params.yaml")))
    theirs = _dvc_params(repo)
    assert theirs, "dvc showed no params"
    assert set(theirs) == set(ours)
    for key, value in theirs.items():
        if isinstance(ours[key], list):  # dvc params diff --json renders lists as their str()
            value = json.loads(value)
        widened = type(ours[key]) is float and type(value) is int  # `xy: 0` for a float field
        assert ours[key] == value and (type(ours[key]) is type(value) or widened), (key, ours[key], value)
    assert theirs["train.gradient.lr"] == 0.001 and theirs["data.n"] == 64 and theirs["data.seed"] == 15
    assert theirs["train.seed"] == 31 and theirs["train.gradient.epochs"] == 10


# Scalars where YAML 1.1 (PyYAML's own loaders) and YAML 1.2 (DVC's ruamel.yaml) part ways, and
# YAML 1.2's own corners: circlefit.yaml12 must read each exactly as `dvc params diff` shows it.
YAML_CASES = {
    "exp": "1e-3",
    "exp_upper": "1E3",
    "leading_dot": ".5",
    "plus": "+1.0",
    "leading_zero": "064",
    "octal": "0o17",
    "hex": "0x1F",
    "underscore": "1_0",
    "word_no": "no",
    "word_off": "off",
    "word_yes": "yes",
    "word_on": "on",
    "word_true": "true",
    "tilde": "~",
    "null_word": "null",
    "nan": ".nan",
    "inf": ".inf",
    "minus_inf": "-.inf",
    "sexagesimal": "1:30",
    "quoted_exp": "'1e-3'",
}


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) and math.isnan(ours):
        return isinstance(theirs, float) and math.isnan(theirs)
    return type(ours) is type(theirs) and ours == theirs


def test_yaml12_reads_every_scalar_as_dvc_shows_it(project, small_params) -> None:
    repo = project()
    text = render(base=small_params) + "traps:\n" + "".join(f"  {k}: {v}\n" for k, v in YAML_CASES.items())
    (repo / "params.yaml").write_text(text)
    git(repo, "commit", "-qam", "yaml 1.2 scalars")
    theirs = _dvc_params(repo)
    ours = yaml12.load(text, "params.yaml")["traps"]
    assert set(ours) == set(YAML_CASES)
    wrong = {
        k: (v, theirs.get(f"traps.{k}", "(not shown)"))
        for k, v in ours.items()
        if not _same(v, theirs.get(f"traps.{k}"))
    }
    assert not wrong, wrong
    assert ours["leading_zero"] == 64 and ours["exp"] == 0.001 and ours["word_no"] == "no" and ours["tilde"] is None


# More scalars, against ruamel.yaml itself (what DVC calls): fast, no DVC process.
RUAMEL_CASES = [
    *YAML_CASES.values(), "1e400", "-1_000", "0b101", "-0x1f", "0xFF_FF", "010", "0", "-0", "+5", "0.", "1.",
    "-.5", "+.5", ".5e-3", "1.5e+3", "12e3", "8,192", "8.192e3", "TRUE", "True", "y", "n", "Null", "", ".NaN",
    "+.inf", "nan", "inf", "1__0", "0_1", "_1", "<<", "=", "2024-01-01", "2001-12-14 21:59:43.10 -5",
]  # fmt: skip


@pytest.mark.parametrize("scalar", RUAMEL_CASES)
def test_yaml12_matches_ruamel_yaml(scalar: str) -> None:
    text = f"k: {scalar}\n"
    try:
        theirs: Any = YAML(typ="safe").load(text)["k"]
    except Exception:  # ruamel refuses it (`=`): so must we
        with pytest.raises(ConfigError):
            yaml12.load(text, "t.yaml")
        return
    ours = yaml12.load(text, "t.yaml")["k"]
    assert _same(ours, theirs), (ours, theirs)


@pytest.mark.parametrize("text", ["2024-01-01", "2001-12-14t21:59:43.10-05:00"])
def test_a_timestamp_looking_value_is_a_date_to_dvc_and_to_us(project, small_params, text: str) -> None:
    # YAML 1.2 as ruamel.yaml reads it keeps the timestamp type: DVC then refuses the whole file
    # ("Unsupported value of type 'date'"); we read the same type, and the schema names the key.
    repo = project()
    (repo / "params.yaml").write_text(render({"data.source": Raw(text)}, small_params))
    git(repo, "commit", "-qam", "a date")
    proc = dvc(repo, "params", "diff", "--all", "--json", check=False)
    assert "data.source" not in proc.stdout and "Unsupported value of type 'date" in proc.stdout + proc.stderr
    value = yaml12.load(text, "t.yaml")
    assert isinstance(value, datetime.date), value
    with pytest.raises(ConfigError, match=r"params.yaml: data.source must be one of .*; got (date|datetime) "):
        load_params(repo / "params.yaml")


def test_dvc_and_stage_both_read_no_as_a_string(project, small_params) -> None:
    repo = project()
    (repo / "params.yaml").write_text(render({"train.device": Raw("no"), "data.source": Raw("off")}, small_params))
    git(repo, "commit", "-qam", "no/off")
    theirs = _dvc_params(repo)
    assert theirs["train.device"] == "no" and theirs["data.source"] == "off"
    with pytest.raises(ConfigError) as info:
        load_params(repo / "params.yaml")
    assert "data.source" in str(info.value) and "the string 'off'" in str(info.value)


def test_dvc_refuses_duplicate_keys_too(project, small_params) -> None:
    repo = project()
    text = render(base=small_params) + "train:\n  lr: 0.5\n"
    (repo / "params.yaml").write_text(text)
    git(repo, "commit", "-qam", "dup")
    proc = dvc(repo, "params", "diff", "--all", "--json", check=False)
    assert "train.gradient.lr" not in proc.stdout  # DVC cannot read it either
    with pytest.raises(ConfigError, match="duplicate key"):
        load_params(repo / "params.yaml")


def test_nan_is_rejected_though_dvc_would_show_it() -> None:
    # DVC shows `.nan` as NaN (and reports it changed on every diff, NaN != NaN); we refuse it.
    msg = rejects(render({"train.gradient.weight_decay": Raw(".nan")}))
    assert "train.gradient.weight_decay must be finite, got nan" in msg
