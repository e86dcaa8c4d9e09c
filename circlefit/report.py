"""Review report: one markdown summary of a change, built from DVC's params/metrics/plots diffs.

Pure: every function here is a function of the `--json` outputs of `dvc params diff`,
`dvc metrics diff` and `dvc plots diff` (a `Diffs`). `circlefit report` (circlefit.cli.report)
runs DVC and writes the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KEY_METRICS",
    "WORKSPACE",
    "Diffs",
    "PlotChange",
    "metrics_section",
    "params_section",
    "plot_changes",
    "plots_section",
    "relative_change",
    "render",
]

WORKSPACE = "workspace"
KEY_METRICS = ("test.rmse", "ood.rmse", "tutorial.rmse", "best_val_loss")  # shown first when changed
Diff = Mapping[str, Mapping[str, Mapping[str, Any]]]  # {file: {dotted key: {old, new, diff}}}


@dataclass(frozen=True)
class Diffs:
    base: str
    head: str  # a git revision, or "workspace"
    params: Diff  # `dvc params diff --json`
    params_deps: Diff  # `dvc params diff --deps --json`: params some stage declares
    metrics: Diff  # `dvc metrics diff --json`
    plots: Mapping[str, Any]  # `dvc plots diff --json`
    plots_html: str | None = None  # where `dvc plots diff -o` wrote the page, as the report links it


@dataclass(frozen=True)
class PlotChange:
    name: str
    rows: dict[str, int]  # data rows per revision
    changed: bool | None  # None: not comparable (an image, or data missing in a revision)


def relative_change(old: Any, new: Any) -> float | None:
    """(new - old) / |old| for finite numbers with old != 0, else None."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
        return None
    if old == 0 or old != old or new != new:
        return None
    return float(new - old) / abs(float(old))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"`{value}`"
    return f"{value:.6g}"


def _fmt_rel(rel: float | None) -> str:
    return "—" if rel is None else f"{rel * 100:+.3g} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def params_section(diff: Diff, deps: Diff) -> str:
    """Changed params; any that no stage declares (so nothing reruns) is flagged."""
    rows = []
    unread = 0
    for path in sorted(diff):
        for key in sorted(diff[path]):
            change = diff[path][key]
            note = ""
            if key not in deps.get(path, {}):
                note, unread = "⚠ no stage reads it: nothing reruns", unread + 1
            rows.append([f"`{key}`", _fmt(change.get("old")), _fmt(change.get("new")), note])
    if not rows:
        return "### Params\n\nNo params changed."
    text = f"### Params\n\n{_table(['param', 'base', 'head', ''], rows)}"
    if unread:
        text += f"\n\n{unread} changed param(s) are not dependencies of any stage in dvc.yaml."
    return text


def metrics_section(diff: Diff, headline: Sequence[str] = KEY_METRICS) -> str:
    """Changed metrics with absolute and relative change; the `headline` ones first."""
    rows, top = [], []
    for path in sorted(diff):
        for key in sorted(diff[path]):
            change = diff[path][key]
            old, new = change.get("old"), change.get("new")
            rel = relative_change(old, new)
            row = [f"`{path}`", f"`{key}`", _fmt(old), _fmt(new), _fmt(change.get("diff")), _fmt_rel(rel)]
            rows.append(row)
            if key in headline:
                top.append(row)
    if not rows:
        return "### Metrics\n\nNo metrics changed."
    header = ["file", "metric", "base", "head", "change", "relative"]
    if not top or len(top) == len(rows):
        return "### Metrics\n\n" + _table(header, rows)
    return (
        f"### Metrics\n\n{_table(header, top)}\n\n"
        f"<details><summary>All {len(rows)} changed metrics</summary>\n\n{_table(header, rows)}\n\n</details>"
    )


def plot_changes(plots: Mapping[str, Any]) -> list[PlotChange]:
    """Per plot: rows per revision and whether its data differ between the two revisions."""
    out = []
    for name, entries in sorted(plots.get("data", {}).items()):
        for entry in entries:
            revs = list(entry.get("revisions", []))
            values = entry.get("content", {}).get("data", {}).get("values") if entry.get("type") == "vega" else None
            if values is None:
                out.append(PlotChange(name, {}, None))
                continue
            by_rev: dict[str, list[dict[str, Any]]] = {rev: [] for rev in revs}
            for row in values:
                by_rev.setdefault(row.get("rev", ""), []).append({k: v for k, v in row.items() if k != "rev"})
            rows = {rev: len(by_rev[rev]) for rev in revs}
            data = [by_rev[rev] for rev in revs]
            comparable = len(data) == 2 and all(data)
            out.append(PlotChange(name, rows, data[0] != data[1] if comparable else None))
    return out


def plots_section(changes: Sequence[PlotChange], html: str | None, errors: Mapping[str, Any] | None = None) -> str:
    """Each plot marked changed/unchanged, with a link to the rendered overlay page."""
    rows = []
    for c in changes:
        status = {True: "changed", False: "unchanged", None: "not comparable"}[c.changed]
        if c.rows and not all(c.rows.values()):
            status = "missing in " + ", ".join(f"`{r}`" for r, n in c.rows.items() if n == 0)
        rows.append([f"`{c.name}`", status, ", ".join(f"{r}: {n}" for r, n in c.rows.items())])
    text = "### Plots\n\n"
    text += f"Both revisions overlaid: [{html}]({html})\n\n" if html else ""
    text += _table(["plot", "data", "rows per revision"], rows) if rows else "No plots found."
    if errors:
        text += "\n\nDVC reported plot errors: " + json.dumps(errors, sort_keys=True)[:500]
    return text


def render(d: Diffs) -> str:
    """The whole report as markdown."""
    title = f"## circlefit: `{d.base}` → `{d.head}`"
    parts = [
        title,
        params_section(d.params, d.params_deps),
        metrics_section(d.metrics),
        plots_section(plot_changes(d.plots), d.plots_html, d.plots.get("errors")),
    ]
    return "\n\n".join(parts) + "\n"
