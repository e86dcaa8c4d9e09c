"""A Hugging Face–style model card (README.md) for the exported model, filled from the run's own files.

Everything comes from the sidecar (model.json) and the probes (probes.json) as written: the
contract, the params, the metrics the evaluate stage measured, the sha256. The bytes are
deterministic (no times, no absolute paths), so the card is a reproducible DVC output too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import yaml

from circlefit.contract import TEST_DATA_SET, sidecar_path

__all__ = ["front_matter", "model_card"]

TAGS = ["onnx", "regression", "tabular-regression", "mlp", "synthetic", "circlefit"]
_BASELINE = "baseline_constant_mean"  # a yardstick in metrics.json, not a result of this model
_METHODS = {  # train.method -> how the card says the model was trained
    "lstsq": (
        "by least squares: the hidden units' hinges are placed where the training rows are, along a few "
        "directions, and the output layer is solved exactly in float64 (circlefit's `train.method: lstsq`)"
    ),
    "gradient": (
        "by gradient descent: PyTorch's initialization, a first-order optimizer, then full-batch L-BFGS "
        "(circlefit's `train.method: gradient`)"
    ),
}
_SPLITS = {  # metrics.json section -> how the card names the data it was measured on
    "test": "held-out test split (inside the training radius)",
    "ood": "out-of-domain ring just outside the training radius",
    "tutorial": "the 36-point tutorial set",
    "baseline_constant_mean": "constant-mean baseline on the test split",
}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key in sorted(d):
        value = d[key]
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def front_matter(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The YAML metadata block: license, library, tags and a model-index with every numeric metric of the model."""
    metrics = sidecar.get("metrics", {})
    results = []
    for section in sorted(metrics):
        values = metrics[section]
        if not isinstance(values, dict) or section == _BASELINE:
            continue
        rows = [{"type": k, "value": v, "name": f"{section} {k}"} for k, v in sorted(values.items()) if _number(v)]
        rows = [r for r in rows if r["type"] != "n"]  # a count, not a metric
        if rows:
            results.append(
                {
                    "task": {"type": "tabular-regression", "name": "x² + y² regression"},
                    "dataset": {"name": _SPLITS.get(section, section), "type": "synthetic", "split": section},
                    "metrics": rows,
                }
            )
    return {
        "license": "mit",
        "library_name": "onnx",
        "pipeline_tag": "tabular-regression",
        "tags": TAGS,
        "model-index": [{"name": "circlefit", "results": results}],
    }


def _run_params(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """The params that made this model, flat: the section of the training method that did not run is left out."""
    train = params.get("train", {})
    unused = {"lstsq", "gradient"} - {train.get("method")}
    return [(k, v) for k, v in _flat(params) if not any(k.startswith(f"train.{m}.") for m in unused)]


def _io_table(sidecar: dict[str, Any]) -> list[str]:
    lines = ["| | name | dtype | shape |", "|---|---|---|---|"]
    for kind in ("inputs", "outputs"):
        for v in sidecar.get(kind, []):
            lines.append(f"| {kind[:-1]} | `{v['name']}` | {v['dtype']} | {_fmt(v['shape'])} |")
    return lines


def _probe_bands(probes: dict[str, Any], radius: float, width: float) -> list[str]:
    """Largest |model - exact x² + y²| over the probes, by where they lie relative to the training radius."""
    xy = np.asarray(probes.get("inputs", []), dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return []
    r = np.hypot(xy[:, 0], xy[:, 1])
    err = np.abs(np.asarray(probes["expected"], dtype=np.float64) - np.asarray(probes["exact"], dtype=np.float64))
    bands = [
        (f"r ≤ {radius:g} (training disk)", r <= radius),
        (f"{radius:g} < r ≤ {radius * (1 + width):g} (out-of-domain ring)", (r > radius) & (r <= radius * (1 + width))),
        (f"r > {radius * (1 + width):g} (far outside)", r > radius * (1 + width)),
    ]
    lines = ["| probes | count | max \\|model − x² − y²\\| | at (x, y) |", "|---|---|---|---|"]
    for label, mask in bands:
        if mask.any():
            i = int(np.flatnonzero(mask)[np.argmax(err[mask])])
            lines.append(f"| {label} | {int(mask.sum())} | {err[i]:.4g} | ({xy[i, 0]:.4g}, {xy[i, 1]:.4g}) |")
    return lines


def _usage(model_file: str, inp: str, out: str) -> list[str]:
    sidecar_file = sidecar_path(model_file).name
    return [
        "## How to use",
        "",
        f"Every runtime below takes `{inp}` float32 [batch, 2] and returns `{out}` float32 [batch, 1]; "
        "`circlefit` (the repository that produced this card) tests each of them against "
        "`probes.json` in CI. Examples for Node, the browser and C live under `examples/` there.",
        "",
        "**Python, onnxruntime**",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        f'session = ort.InferenceSession("{model_file}", providers=["CPUExecutionProvider"])',
        f'print(session.run(["{out}"], {{"{inp}": np.array([[3.0, 4.0]], np.float32)}})[0])  # about 25',
        "```",
        "",
        "**Python, onnx.reference** (the ONNX specification's evaluator, no runtime)",
        "",
        "```python",
        "import numpy as np, onnx",
        "from onnx.reference import ReferenceEvaluator",
        f'ref = ReferenceEvaluator(onnx.load("{model_file}"))',
        f'print(ref.run(None, {{"{inp}": np.array([[3.0, 4.0]], np.float32)}})[0])',
        "```",
        "",
        "**Node.js, onnxruntime-node** (`examples/node/check_probes.mjs`)",
        "",
        "```js",
        'import * as ort from "onnxruntime-node";',
        f'const session = await ort.InferenceSession.create("{model_file}");',
        'const xy = new ort.Tensor("float32", Float32Array.from([3, 4]), [1, 2]);',
        f"console.log((await session.run({{ {inp}: xy }})).{out}.data);",
        "```",
        "",
        "**Browser, onnxruntime-web** (wasm backend; `examples/web/`): serve this directory over HTTP "
        '(not `file://`), `import * as ort from "onnxruntime-web/wasm"`, set `ort.env.wasm.wasmPaths` '
        "to an absolute URL and `ort.env.wasm.numThreads = 1` without COOP/COEP headers, then as in Node.",
        "",
        "**C, onnxruntime C API** (`examples/c/`): `make -C examples/c` and "
        f"`examples/c/build/check_probes {model_file} probes.json`; exits non-zero beyond tolerance.",
        "",
        "**OpenVINO** (pass f32: on CPUs with AVX512_BF16 OpenVINO computes in bf16 by default)",
        "",
        "```python",
        "import numpy as np, openvino as ov",
        "core = ov.Core()",
        f'compiled = core.compile_model(core.read_model("{model_file}"), "CPU", {{"INFERENCE_PRECISION_HINT": "f32"}})',
        "print(compiled([np.array([[3.0, 4.0]], np.float32)])[0])",
        "```",
        "",
        "**tract** (Sonos' Rust engine, Python wheel `tract`)",
        "",
        "```python",
        "import numpy as np, tract",
        f'runnable = tract.onnx().load("{model_file}").into_model().into_runnable()',
        "print(runnable.run([np.array([[3.0, 4.0]], np.float32)])[0].to_numpy())",
        "```",
        "",
        "Runtimes that cannot read ONNX metadata find the contract, the tolerance and the metrics "
        f"in `{sidecar_file}`.",
    ]


def model_card(sidecar: dict[str, Any], probes: dict[str, Any], model_file: str) -> str:
    """The card's text, from the sidecar and probes documents; `model_file` is the model's file name."""
    model = sidecar.get("model", {})
    params = sidecar.get("params", {})
    metrics = sidecar.get("metrics", {})
    radius = float(sidecar.get("train_radius", params.get("data", {}).get("r_max", math.nan)))
    width = float(params.get("data", {}).get("ood", {}).get("width", 0.1))
    inp = sidecar["inputs"][0]["name"]
    out = sidecar["outputs"][0]["name"]
    tol = probes.get("tolerance", {})
    probes_file = sidecar.get("probes", {}).get("file", "probes.json")
    meta = yaml.safe_dump(front_matter(sidecar), sort_keys=False, allow_unicode=True, width=1000)
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
        "# circlefit: x² + y² from raw (x, y)",
        "",
        "A small ReLU MLP trained to predict x² + y² from raw coordinates, exported to one self-contained "
        "ONNX file. The input standardization and the label de-standardization are folded into the first "
        "and last layers, so the graph takes raw (x, y) and returns the raw prediction.",
        "",
        "| file | sha256 |",
        "|---|---|",
        f"| `{model_file}` | `{model.get('sha256', '')}` |",
        f"| `{probes_file}` | `{sidecar.get('probes', {}).get('sha256', '')}` |",
        "",
        f"{model.get('bytes', '?')} bytes, opset {model.get('opset', '?')}, IR version "
        f"{model.get('ir_version', '?')}, model_version {model.get('model_version', '?')}, "
        f"produced by {model.get('producer', '?')} ({sidecar.get('exporter', '?')}). "
        f"Check the file before use: `sha256sum {model_file}`.",
        "",
        "## Input and output",
        "",
        *_io_table(sidecar),
        "",
        "`batch` is symbolic: any number of rows, including 0. No preprocessing: pass the coordinates as they are.",
        "",
        "## Training",
        "",
        f"Trained on points of the disk r ≤ {radius:g}, "
        f"{_METHODS.get(params.get('train', {}).get('method'), 'by an unrecorded method')}. "
        f"The parameters of the run (all of them, params_sha256 `{sidecar.get('params_sha256', '')}`, "
        "are in the model's metadata `circlefit.params`):",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| `{k}` | {_fmt(v)} |" for k, v in _run_params(params)],
        "",
        "## Evaluation",
        "",
        "Measured by the evaluate stage on the stored weights evaluated in float64 (metrics.json); "
        f"`{_BASELINE}` is the error of always predicting the training labels' mean, for scale:",
        "",
        "| data | metric | value |",
        "|---|---|---|",
        *[
            f"| {section} | {k} | {_fmt(v)} |"
            for section in sorted(metrics)
            if isinstance(metrics[section], dict)
            for k, v in _flat(metrics[section])
            if _number(v)
        ],
        "",
        "### Limits: out of domain",
        "",
        f"The model is only meant for r ≤ {radius:g}, the radius it was trained on. A ReLU network is piecewise "
        "linear: outside the training disk it extrapolates along straight lines while x² + y² keeps "
        "curving, so the error grows with the distance. Over the probe points:",
        "",
        *_probe_bands(probes, radius, width),
        "",
        "## Checking a runtime",
        "",
        f"`{probes_file}` holds {probes.get('count', '?')} probe inputs with the outputs a runtime must reproduce: "
        f"|got − expected| ≤ rtol · (|expected| + offset), rtol {_fmt(tol.get('rtol', '?'))}, "
        f"offset {_fmt(tol.get('offset', '?'))}. The same probes in the ONNX Model Zoo layout are "
        f"`{TEST_DATA_SET}/input_0.pb` and `output_0.pb` (serialized `onnx.TensorProto`), "
        "which ONNX's backend test runner reads.",
        "",
        *_usage(model_file, inp, out),
        "",
        "## License",
        "",
        "MIT.",
    ]
    return "\n".join(lines) + "\n"
