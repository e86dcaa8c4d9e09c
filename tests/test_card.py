"""The model card (README.md) the export writes beside the model: parseable front matter, the run's own numbers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import yaml

from circlefit.export.bundle import Bundle, export_bundle
from circlefit.export.card import model_card

from conftest import REPO
from tiny_model import tiny_model

METRICS = json.loads((REPO / "data/eval/metrics.json").read_text())  # a real evaluate stage's metrics


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    t = tiny_model()
    out = tmp_path_factory.mktemp("bundle")
    b = Bundle(model=out / "model.onnx", probes=out / "probes.json")
    export_bundle(t.model, t.stats, t.params, t.splits(), t.ds.train_radius, METRICS, b)
    return b


def _split(card: str) -> tuple[dict[str, Any], str]:
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_front_matter_parses_with_license_library_tags_and_metrics(bundle: Bundle) -> None:
    meta, _ = _split(bundle.card.read_text(encoding="utf-8"))
    assert meta["license"] == "mit" and meta["library_name"] == "onnx"
    assert {"onnx", "regression"} <= set(meta["tags"])
    [index] = meta["model-index"]
    got = {(r["dataset"]["split"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]}
    want = {
        (section, k): v
        for section, values in METRICS.items()
        for k, v in values.items()
        if isinstance(v, float) and k != "n" and section != "baseline_constant_mean"
    }
    assert got == want  # every numeric metric of the model in metrics.json, exactly; the baseline is no result of it
    assert got[("ood", "rmse")] == METRICS["ood"]["rmse"] and got[("test", "rmse")] == METRICS["test"]["rmse"]


def test_card_names_the_model_sha256_contract_and_every_runtime(bundle: Bundle) -> None:
    _, body = _split(bundle.card.read_text(encoding="utf-8"))
    sha = hashlib.sha256(bundle.model.read_bytes()).hexdigest()
    assert f"| `model.onnx` | `{sha}` |" in body
    assert hashlib.sha256(bundle.probes.read_bytes()).hexdigest() in body
    assert "| input | `xy` | float32 | [batch, 2] |" in body
    assert "| output | `x2_plus_y2` | float32 | [batch, 1] |" in body
    assert "| `model.hidden` | [16] |" in body and "| `train.method` | lstsq |" in body  # the params summary
    assert "| `train.lstsq.directions` |" in body and "train.gradient." not in body  # the method that ran, only
    assert "by least squares" in body
    assert f"| ood | rmse | {METRICS['ood']['rmse']:.6g} |" in body
    assert "(out-of-domain ring)" in body and "(far outside)" in body  # the limits, from the probes
    for runtime in ("onnxruntime", "onnx.reference", "onnxruntime-node", "onnxruntime-web", "C API", "OpenVINO"):
        assert runtime in body, runtime
    assert "tract" in body and "test_data_set_0/input_0.pb" in body


def test_card_says_how_a_gradient_model_was_trained(bundle: Bundle) -> None:
    sidecar = json.loads(bundle.sidecar.read_text())
    sidecar["params"]["train"]["method"] = "gradient"
    _, body = _split(model_card(sidecar, json.loads(bundle.probes.read_text()), "model.onnx"))
    assert "by gradient descent" in body and "| `train.gradient.optimizer` | adam |" in body
    assert "train.lstsq." not in body


def test_card_is_a_function_of_the_files_beside_it(bundle: Bundle) -> None:
    """Deterministic bytes: rebuilt from model.json and probes.json alone it is identical; no path, no time."""
    card = bundle.card.read_bytes()
    sidecar = json.loads(bundle.sidecar.read_text())
    probes = json.loads(bundle.probes.read_text())
    assert model_card(sidecar, probes, "model.onnx").encode() == card
    assert str(bundle.model.parent).encode() not in card and str(REPO).encode() not in card


def test_card_out_of_domain_rows_match_the_probes(bundle: Bundle) -> None:
    probes = json.loads(bundle.probes.read_text())
    worst = max(abs(e - x) for e, x in zip(probes["expected"], probes["exact"], strict=True))
    _, body = _split(bundle.card.read_text(encoding="utf-8"))
    assert f"| {worst:.4g} |" in body  # the worst probe error is quoted (it is far outside the disk)


def test_repo_card_out_is_declared_in_dvc_yaml() -> None:
    outs = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["export"]["outs"]
    names = {next(iter(o)) if isinstance(o, dict) else o for o in outs}
    assert {"data/export/README.md", "data/export/test_data_set_0"} <= names
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["export"]["deps"]
    assert {"circlefit/export/card.py", "circlefit/export/zoo.py"} <= set(deps)
