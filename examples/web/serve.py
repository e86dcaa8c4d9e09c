"""Serve the browser example on 127.0.0.1: the page, onnxruntime-web's wasm files and one exported model.

Usage (from the repository root, after `cd examples/web && npm ci`):

    python3 examples/web/serve.py data/export            # then open http://127.0.0.1:8000/

The page needs a real origin: opened from file:// its fetches of the model fail (CORS, origin null).
Only what the page loads is served:

    /                   index.html, app.mjs, style.css (this folder)
    /ort/<file>         the three onnxruntime-web files the wasm backend loads (node_modules/onnxruntime-web/dist)
    /model/<path>       .onnx and .json files under MODEL_DIR (model.onnx, model.json, probes.json)

No COOP/COEP headers are sent, so the page has no SharedArrayBuffer and runs onnxruntime-web on one
thread. Standard library only; `--port 0` picks a free port. The first line on stdout is the URL.
"""

from __future__ import annotations

import argparse
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "app.mjs", "style.css")
ORT_DIST = HERE / "node_modules" / "onnxruntime-web" / "dist"
# `import "onnxruntime-web/wasm"` (mapped to ort.wasm.min.mjs by the page's import map) loads the other two.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_SUFFIXES = (".onnx", ".json")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",  # WebAssembly.instantiateStreaming insists on it
    ".json": "application/json",
    ".onnx": "application/octet-stream",
}


def resolve(url_path: str, model_dir: Path) -> Path | None:
    """The file behind `url_path`, or None when the server does not serve it."""
    path = unquote(urlsplit(url_path).path)
    if path in ("/", ""):
        return HERE / "index.html"
    head, _, rest = path.lstrip("/").partition("/")
    if not rest and head in PAGE_FILES:
        return HERE / head
    if head == "ort" and rest in ORT_FILES:
        return ORT_DIST / rest
    if head == "model" and rest:
        root = model_dir.resolve()
        file = (root / rest).resolve()
        if file.is_relative_to(root) and file.suffix in MODEL_SUFFIXES:
            return file
    return None


def handler(model_dir: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            file = resolve(self.path, model_dir)
            if file is None or not file.is_file():
                hint = " (run `npm ci` in examples/web)" if self.path.startswith("/ort/") else ""
                self.send_error(HTTPStatus.NOT_FOUND, f"not served: {self.path}{hint}")
                return
            data = file.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")  # a re-exported model is never served stale
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"serve: {self.address_string()} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, nargs="?", default=HERE.parents[1] / "data" / "export")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if not args.model_dir.is_dir():
        parser.error(f"{args.model_dir}: not a folder (run `dvc repro`, or pass an export folder)")
    if not (args.model_dir / "model.json").is_file():
        # Still useful for several bundles in sub-folders, opened as /?model=/model/<sub>/model.onnx.
        print(f"serve: note: no {args.model_dir / 'model.json'}; the page's default model will 404", file=sys.stderr)
    if not all((ORT_DIST / f).is_file() for f in ORT_FILES):
        parser.error(f"{ORT_DIST}: onnxruntime-web is not installed (cd {HERE} && npm ci)")
    server = ThreadingHTTPServer((args.host, args.port), handler(args.model_dir))
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
