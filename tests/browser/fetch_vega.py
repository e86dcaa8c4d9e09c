"""Fetch the vega, vega-lite and vega-embed builds that dvc-render's HTML loads, for offline tests.

`dvc plots show` writes HTML whose <script> tags load exact versions from a CDN. The browser
test serves those same files locally: this script reads the versions from the installed
dvc-render, fetches each package with `npm pack` and keeps the file the CDN would serve (the
package.json `jsdelivr` entry) as `tests/browser/vendor/<name>@<version>.js`.

Usage: .venv/bin/python tests/browser/fetch_vega.py   (run by .ci/run; idempotent)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"
_SCRIPT = re.compile(r"/npm/(?P<name>[a-z][a-z0-9-]*)@(?P<version>[0-9][0-9A-Za-z.+-]*)")


def wanted() -> dict[str, str]:
    """{package: version} as pinned in the installed dvc-render's HTML."""
    from dvc_render.vega import VegaRenderer

    found = {m["name"]: m["version"] for m in _SCRIPT.finditer(VegaRenderer.SCRIPTS)}
    if set(found) != {"vega", "vega-lite", "vega-embed"}:
        raise SystemExit(f"fetch_vega: unexpected dvc-render scripts {found!r}; update this script")
    return found


def asset(name: str, version: str) -> Path:
    return VENDOR / f"{name}@{version}.js"


def fetch(name: str, version: str) -> Path:
    """`npm pack NAME@VERSION` and keep the browser build the CDN serves."""
    dest = asset(name, version)
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", "--json", "--silent", f"{name}@{version}", "--pack-destination", tmp],
            cwd=tmp, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        tarball = Path(tmp) / json.loads(out)[0]["filename"]
        with tarfile.open(tarball) as tar:
            meta = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
            entry = meta.get("jsdelivr") or meta["unpkg"]
            data = tar.extractfile(f"package/{entry}").read()  # type: ignore[union-attr]
    VENDOR.mkdir(exist_ok=True)
    tmp_dest = dest.with_suffix(".part")
    tmp_dest.write_bytes(data)
    tmp_dest.replace(dest)
    return dest


def main() -> int:
    for name, version in wanted().items():
        print(fetch(name, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
