"""The package's shape, read from the source (AST): imports run one way, nothing imports the CLI, and the
stages that need no torch cannot reach it at import time.

Layers, bottom to top (a module may import its own package and anything in a lower layer):

    errors, contract          what everything may raise or rely on; import nothing of circlefit
    io, config, numeric       files, params, CPU-independent float64 arithmetic
    device, data, runtime     the resolved device; the data and its stats; the exported model in onnxruntime
    model, report             the torch module and its weights file; the pure review report
    train, evaluate           training (one entry) and metrics
    export                    the verified ONNX bundle
    verify                    a model checked against its sidecar and probes (the export's own tolerance)
    package                   serving formats (MLflow, Triton, ORT) written from a verified model
    cli                       the console script: the edge, imported by nothing (but `python -m circlefit`)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "circlefit"
LAYERS = [
    {"errors", "contract"},
    {"io", "config", "numeric"},
    {"device", "data", "runtime"},
    {"model", "report"},
    {"train", "evaluate"},
    {"export"},
    {"verify"},
    {"package"},
    {"cli"},
    {"__main__"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
TORCH = ("torch", "onnx", "onnxruntime", "onnxscript")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(name: str) -> Path | None:
    base = REPO / name.replace(".", "/")
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))} | {
    module_name(p): p for p in sorted((REPO / "stages").glob("*.py"))
}


def imports(path: Path, module_level_only: bool = False) -> set[str]:
    """Absolute names of every import in `path` (relative ones resolved); with `module_level_only`, the
    imports that run when the module is imported: not those inside functions or `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes: list[ast.AST] = list(ast.walk(tree)) if not module_level_only else list(_top_level(tree.body))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return out


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        if isinstance(stmt, (ast.If, ast.Try, ast.With)):
            inner = [*stmt.body, *getattr(stmt, "orelse", []), *getattr(stmt, "finalbody", [])]
            inner += [s for h in getattr(stmt, "handlers", []) for s in h.body]
            out += _top_level(inner)
        elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(stmt)
        elif isinstance(stmt, ast.ClassDef):
            out += _top_level(stmt.body)
    return out


def component(name: str) -> str:
    """`circlefit.train.lstsq` → `train`; the package itself is ``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def internal(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES and n.startswith("circlefit.")}


def test_every_module_sits_in_a_layer() -> None:
    comps = {component(n) for n in MODULES if n.startswith("circlefit.")}
    assert comps <= set(RANK), sorted(comps - set(RANK))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("circlefit.")))
def test_imports_run_down_the_layers(name: str) -> None:
    mine = component(name)
    for dep in internal(imports(MODULES[name])):
        theirs = component(dep)
        assert theirs == mine or RANK[theirs] < RANK[mine], f"{name} ({mine}) imports {dep} ({theirs})"


def test_no_import_cycles() -> None:
    graph = {n: internal(imports(p)) - {n} for n, p in MODULES.items() if n.startswith("circlefit")}
    # a package's __init__ importing its own modules is how a package shows its face, not a cycle
    graph = {
        n: {d for d in deps if not (MODULES[n].name == "__init__.py" and d.startswith(n + "."))}
        for n, deps in graph.items()
    }
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(
                [*path[path.index(d) :], d] if d in path else [n, d]
            )
            if d not in state:
                visit(d, [*path, d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def test_nothing_in_the_library_imports_the_cli() -> None:
    users = sorted(
        n for n, p in MODULES.items() if not n.startswith(("circlefit.cli", "circlefit.__main__", "stages"))
        and any(d == "circlefit.cli" or d.startswith("circlefit.cli.") for d in imports(p))
    )  # fmt: skip
    assert users == []


def reachable(start: str) -> set[str]:
    """Every module imported, transitively, when `start` is imported (module-level imports only)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = MODULES.get(name) or source_of(name)
        if path is None or not str(path).startswith(str(REPO)):
            continue
        for dep in imports(path, module_level_only=True):
            parts = dep.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]  # a package's __init__ runs first
    return seen


@pytest.mark.parametrize("stage", ["check_params", "generate", "normalize", "train", "evaluate"])
def test_the_torch_free_stages_reach_no_torch(stage: str) -> None:
    """Importing these stages loads no torch or ONNX: lstsq on the CPU, the float64 evaluation (the
    other methods and devices import torch inside the functions that need it)."""
    found = sorted(n for n in reachable(f"stages.{stage}") if n.split(".")[0] in TORCH)
    assert found == [], found


def test_the_cli_reaches_no_torch() -> None:
    found = sorted(n for n in reachable("circlefit.cli") if n.split(".")[0] in ("torch", "onnxscript"))
    assert found == [], found


def test_the_check_can_fail() -> None:
    """A live negative control: the export stage does import torch at module level."""
    assert "torch" in reachable("stages.export") and "onnxruntime" in reachable("circlefit.runtime")
