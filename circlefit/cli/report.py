"""`circlefit report BASE [HEAD] [-o report.md]`: run DVC's three diffs and render them (circlefit.report).

HEAD omitted compares BASE against the workspace, as `dvc metrics diff BASE` does. This module
is the edge that runs `dvc` in a subprocess and writes the file; the rendering is pure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from circlefit.errors import ReportError
from circlefit.io import atomic_file
from circlefit.report import WORKSPACE, Diffs, render

__all__ = ["collect", "configure", "run"]

log = logging.getLogger(__name__)


def _dvc(repo: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "dvc", *args]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:] or [f"exit status {proc.returncode}"]
        raise ReportError(f"`dvc {' '.join(args)}` failed in {repo}: {errors[0]}")
    return proc.stdout


def collect(repo: Path, base: str, head: str | None, plots_dir: Path | None, link_from: Path) -> Diffs:
    """Run the three DVC diffs (and render the plots page into `plots_dir` if given)."""
    revs = [base] if head is None else [base, head]
    params = json.loads(_dvc(repo, "params", "diff", *revs, "--json") or "{}")
    deps = json.loads(_dvc(repo, "params", "diff", *revs, "--deps", "--json") or "{}")
    metrics = json.loads(_dvc(repo, "metrics", "diff", *revs, "--json") or "{}")
    plots = json.loads(_dvc(repo, "plots", "diff", *revs, "--json") or "{}")
    html = None
    if plots_dir is not None:
        plots_dir.resolve().parent.mkdir(parents=True, exist_ok=True)
        _dvc(repo, "plots", "diff", *revs, "-o", str(plots_dir.resolve()))
        html = Path(os.path.relpath(plots_dir.resolve() / "index.html", link_from.resolve())).as_posix()
    return Diffs(base, head or WORKSPACE, params, deps, metrics, plots, html)


def configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("base", help="git revision to compare from (e.g. main, HEAD~1)")
    ap.add_argument("head", nargs="?", help="git revision to compare to (default: the workspace)")
    ap.add_argument("-o", "--output", type=Path, help="markdown file to write (default: stdout)")
    ap.add_argument("--plots-dir", type=Path, help="where `dvc plots diff` writes its HTML (default: next to -o)")
    ap.add_argument("--no-plots-html", action="store_true", help="do not render the plots page")
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="project root (default: current directory)")


def run(args: argparse.Namespace) -> int:
    """Collect the diffs, render and write the report; DVC failures raise ReportError."""
    out_dir = args.output.parent if args.output else Path.cwd()
    plots_dir = None
    if not args.no_plots_html:
        stem = args.output.stem if args.output else "report"
        plots_dir = args.plots_dir or out_dir / f"{stem}_plots"
    try:
        text = render(collect(args.repo, args.base, args.head, plots_dir, out_dir))
    except json.JSONDecodeError as e:
        raise ReportError(f"DVC printed JSON that cannot be read: {e}") from None
    if args.output is None:
        sys.stdout.write(text)
        return 0
    with atomic_file(args.output) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s", args.output)
    return 0
