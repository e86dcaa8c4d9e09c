"""The plots render in a real browser: headless Chromium draws the marks of every plot.

`dvc plots show/diff --html-template` writes DVC's own plot divs into tests/browser/check_template.html,
which loads the exact vega/vega-lite/vega-embed builds dvc-render pins (from tests/browser/vendor,
fetched by tests/browser/fetch_vega.py; no CDN) and reports, per plot, how many data-mark items
the Vega view drew inside the plot area and how many canvas pixels it inked.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import dump_yaml, dvc

pytestmark = pytest.mark.slow

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
PLOTS = ("loss_curve", "predicted_vs_true", "error_by_radius")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--allow-file-access-from-files", "--virtual-time-budget=30000",
]  # fmt: skip
_RESULT = re.compile(r'<pre id="circlefit-result">(.*?)</pre>', re.S)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the browser test: {why}")
    pytest.skip(why)


def _load_fetch_vega() -> Any:
    spec = importlib.util.spec_from_file_location("fetch_vega", BROWSER_DIR / "fetch_vega.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        _unavailable("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return str(found)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The check template with <script> tags for the locally vendored vega builds."""
    fetch_vega = _load_fetch_vega()
    assets = [fetch_vega.asset(name, version) for name, version in fetch_vega.wanted().items()]
    missing = [a.name for a in assets if not a.is_file()]
    if missing:
        _unavailable(f"vega builds {missing} not vendored; run: .venv/bin/python tests/browser/fetch_vega.py")
    scripts = "\n".join(f'<script src="{a.as_uri()}"></script>' for a in assets)
    path = tmp_path_factory.mktemp("template") / "check_template.html"
    path.write_text((BROWSER_DIR / "check_template.html").read_text().replace("@VENDOR_SCRIPTS@", scripts))
    return path


def render(repo: Path, command: list[str], template: Path, out: Path) -> Path:
    """`dvc plots …` into `out` through the check template; returns the page."""
    dvc(repo, "plots", *command, "--html-template", str(template), "-o", str(out))
    page = out / "index.html"
    assert page.is_file(), f"dvc plots {' '.join(command)} wrote no page"
    return page


def probe(chromium: str, page: Path, profile: Path) -> dict[str, Any]:
    """Open `page` in headless Chromium and return what the probe script reported."""
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    match = _RESULT.search(proc.stdout)
    assert match, f"chromium printed no probe result (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    text = html.unescape(match.group(1))
    assert text != "pending", "the probe did not finish within the virtual time budget"
    return json.loads(text)


def problems(result: dict[str, Any], plots: tuple[str, ...] = PLOTS) -> dict[str, str]:
    """{plot id: what is wrong} for each expected plot that did not draw its data."""
    found = {p["el"].lstrip("#"): p for p in result.get("plots", [])}
    bad = {}
    for name in plots:
        p = found.get(name)
        if p is None:
            bad[name] = "not on the page"
        elif "error" in p:
            bad[name] = f"error: {p['error']}"
        elif not p["rows"]:
            bad[name] = "the spec carries no data rows"
        elif max(p["marks"]["visible"].values(), default=0) < p["rows"]:
            bad[name] = f"drew {p['marks']['visible']} visible mark items for {p['rows']} data rows"
        elif p["ink"] <= 0:
            bad[name] = "the canvas is blank"
    if result.get("errors"):
        bad["(page)"] = "; ".join(result["errors"])
    return bad


def test_plots_show_draws_every_plot(history, chromium, template, tmp_path):
    result = probe(chromium, render(history, ["show"], template, tmp_path / "out"), tmp_path / "profile")
    assert problems(result) == {}, result
    assert {p["renderer"] for p in result["plots"]} == {"canvas"}  # what users see: vega-embed's default


def test_plots_diff_draws_both_revisions(history, chromium, template, tmp_path):
    page = render(history, ["diff", "HEAD~1", "HEAD"], template, tmp_path / "out")
    result = probe(chromium, page, tmp_path / "profile")
    assert problems(result) == {}, result
    for p in result["plots"]:
        assert sorted(p["revs"]) == ["HEAD", "HEAD~1"], p


def _typo_in_y(props: dict[str, Any]) -> None:
    (path,) = props["y"]
    props["y"] = {path: props["y"][path] + "_typo"}  # DVC warns and renders an empty spec


def _x_on_a_text_column(props: dict[str, Any]) -> None:
    props["x"] = "split"  # exists, so DVC is silent, but "test"/"ood" cannot be placed on a number axis


@pytest.mark.parametrize(
    ("plot", "breakage"), [("predicted_vs_true", _typo_in_y), ("error_by_radius", _x_on_a_text_column)]
)
def test_a_broken_plot_definition_is_caught(history, chromium, template, tmp_path, plot, breakage):
    repo = tmp_path / "proj"
    shutil.copytree(history, repo, symlinks=True)
    dvc_yaml = YAML(typ="safe").load((repo / "dvc.yaml").read_text())
    (props,) = (entry[plot] for entry in dvc_yaml["plots"] if plot in entry)
    breakage(props)
    dump_yaml(dvc_yaml, repo / "dvc.yaml")
    result = probe(chromium, render(repo, ["show"], template, tmp_path / "out"), tmp_path / "profile")
    assert set(problems(result)) == {plot}, result
