"""examples/web: the page runs a freshly exported model in headless Chromium with onnxruntime-web (wasm).

One browser run (examples/web/check_page.mjs: playwright-core driving the system Chromium, no
browser download) opens the page three times, served by examples/web/serve.py on 127.0.0.1:
the exported bundle as is, the bundle with one weight byte flipped, and the bundle with one
probe's expected value moved (its sidecar re-hashed so only the verdict can catch it). The
screenshot of the first page is kept in pytest's tmp dir and, with CIRCLEFIT_SCREENSHOT=path,
copied there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import REPO
from tiny_model import tiny_model

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "web"
NODE, NPM = shutil.which("node"), shutil.which("npm")
PAGES = ("good", "tampered", "wrong_probe")
TRY = (0.6, -0.8)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the browser example: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def example() -> Path:
    if NODE is None or NPM is None:
        _unavailable("node and npm are needed for the browser example")
    needed = ("onnxruntime-web", "playwright-core")
    if not all((EXAMPLE / "node_modules" / name).is_dir() for name in needed):
        # playwright-core never downloads a browser; the variable says so for anything that might.
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        cmd = [str(NPM), "ci", "--no-audit", "--no-fund"]
        proc = subprocess.run(cmd, cwd=EXAMPLE, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            _unavailable(f"npm ci in examples/web failed:\n{proc.stdout}\n{proc.stderr}")
    return EXAMPLE


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if found is None:
        _unavailable("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return str(found)


def _copy(src: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with the three bundles the page is opened on."""
    root = tmp_path_factory.mktemp("site")
    tiny_model().export(root / "good")

    tampered = _copy(root / "good", root / "tampered")
    data = bytearray((tampered / "model.onnx").read_bytes())
    weight = onnx.load(str(tampered / "model.onnx")).graph.initializer[0].raw_data
    data[data.find(weight)] ^= 1
    (tampered / "model.onnx").write_bytes(bytes(data))

    wrong = _copy(root / "good", root / "wrong_probe")
    probes = json.loads((wrong / "probes.json").read_text())
    probes["expected"][5] += 0.5
    text = json.dumps(probes)
    (wrong / "probes.json").write_text(text)
    sidecar = json.loads((wrong / "model.json").read_text())
    sidecar["probes"]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (wrong / "model.json").write_text(json.dumps(sidecar))
    return root


@pytest.fixture(scope="module")
def server(example: Path, site: Path) -> Iterator[str]:
    # Every bundle is a sub-folder of `site`, opened as ?model=/model/<name>/model.onnx.
    cmd = [sys.executable, str(example / "serve.py"), str(site), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"serve.py printed {url!r}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=600)


@pytest.fixture(scope="module")
def pages(example: Path, chromium: str, server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{bundle: what check_page.mjs reported for the page opened on it}; the first page's screenshot is kept."""
    shot = tmp_path_factory.mktemp("screenshot") / "web_example.png"
    urls = [f"{server}?model=/model/{name}/model.onnx" for name in PAGES]
    cmd = [str(NODE), "check_page.mjs", "--screenshot", str(shot), "--try", ",".join(map(str, TRY)), *urls]
    env = dict(os.environ, CHROMIUM=chromium)
    proc = subprocess.run(cmd, cwd=example, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), f"check_page.mjs failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["url"] for r in results] == urls, proc.stdout
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if target := os.environ.get("CIRCLEFIT_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
    return {"screenshot": shot, **dict(zip(PAGES, results, strict=True))}


def test_every_probe_passes_in_the_page(pages: dict[str, Any], site: Path) -> None:
    page = pages["good"]
    probes = json.loads((site / "good" / "probes.json").read_text())
    assert page["state"] == "ready", page
    assert page["status"] == f"Model verified and all {len(probes['expected'])} probes passed."
    assert page["probes"]["n"] == page["probes"]["passed"] == len(probes["expected"])
    assert page["probes"]["failed"] == 0 and page["probes"]["maxRatio"] <= 1
    assert page["sha256"] == page["expectedSha256"] == probes["model_sha256"]
    assert page["sessions"] == 1
    assert page["ort"] == json.loads((EXAMPLE / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    assert page["consoleErrors"] == []


def test_a_typed_point_matches_onnxruntime(pages: dict[str, Any], site: Path) -> None:
    got = pages["good"]["try"]
    session = ort.InferenceSession(str(site / "good" / "model.onnx"), providers=["CPUExecutionProvider"])
    want = session.run(None, {"xy": np.array([TRY], dtype=np.float32)})[0][0, 0]
    assert (got["x"], got["y"]) == TRY
    assert got["pred"] == pytest.approx(float(want), rel=1e-5, abs=1e-4)
    x, y = np.float32(TRY[0]), np.float32(TRY[1])
    assert got["exact"] == pytest.approx(float(x) ** 2 + float(y) ** 2, rel=1e-12)


def test_the_heatmap_drew(pages: dict[str, Any], site: Path) -> None:
    page = pages["good"]
    canvas, heat = page["canvas"], page["heatmap"]
    sidecar = json.loads((site / "good" / "model.json").read_text())
    assert heat["extent"] == pytest.approx(sidecar["train_radius"] * (1 + sidecar["params"]["data"]["ood"]["width"]))
    # Every grid point inside the ring's outer edge is painted (a disk in its square: about pi/4 of it) ...
    assert canvas["inked"] == heat["points"]
    assert 0.75 < canvas["inked"] / canvas["pixels"] < 0.8
    # ... in many colours spanning the scale (viridis runs from dark purple to light yellow).
    assert canvas["colours"] > 100
    assert canvas["lumaMin"] < 0.15 and canvas["lumaMax"] > 0.85, canvas
    assert 0 < heat["lo"] < heat["hi"] and heat["ticks"][0] >= heat["lo"] and heat["ticks"][-1] == heat["hi"]
    assert 0 < heat["diskMax"] <= heat["hi"] and 0 < heat["ringMax"] <= heat["hi"]


def test_a_tampered_model_is_refused(pages: dict[str, Any]) -> None:
    page = pages["tampered"]
    assert page["state"] == "refused", page
    assert page["status"].startswith("Refused: /model/tampered/model.onnx: sha256 "), page["status"]
    assert "does not match the sidecar" in page["status"]
    assert page["sha256"] != page["expectedSha256"]
    assert page["sessions"] == 0 and page["runs"] == 0  # no inference session was created
    assert "probes" not in page and "heatmap" not in page


def test_a_wrong_expected_value_fails_the_verdict(pages: dict[str, Any]) -> None:
    page = pages["wrong_probe"]
    assert page["state"] == "ready", page
    assert page["probes"]["failed"] == 1 and page["probes"]["passed"] == page["probes"]["n"] - 1
    assert [f["i"] for f in page["probes"]["failures"]] == [5]
    assert page["status"] == f"Model loaded, but 1 of {page['probes']['n']} probes failed."
