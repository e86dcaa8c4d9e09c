"""What every package format shares: the verified source, the graph's I/O, and the all-or-nothing directory write.

A package starts from a model that `circlefit.verify` passed and carries the same bytes (never a
re-export), with the sidecar and probes beside its `model.onnx`, so `circlefit verify` checks the
package where it lands. The directory appears under its final name only once it is complete and
verified; any failure before that leaves nothing there.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx

from circlefit.contract import sidecar_path
from circlefit.errors import PackageError
from circlefit.export.sidecar import describe_io
from circlefit.io import atomic_dir
from circlefit.verify import Probes, verify

__all__ = [
    "MODEL_FILE",
    "Packaged",
    "Source",
    "Tensor",
    "load_source",
    "missing_extra",
    "staged_dir",
    "write_package",
]

MODEL_FILE = "model.onnx"  # the model's name inside every package (Triton's onnxruntime backend loads this name)


def missing_extra(fmt: str, module: str | None, extra: str) -> PackageError:
    """The one-line error for an optional dependency that is not installed."""
    return PackageError(
        f"{fmt} packages need the {extra} extra ({module or 'a dependency'} is not installed): "
        f"pip install -e '.[{extra}]'"
    )


@dataclass(frozen=True)
class Tensor:
    """One graph input or output as the graph declares it: a symbolic dim is its name (the batch)."""

    name: str
    dtype: str  # circlefit.export.sidecar.describe_io's name: float32, or the ONNX type's name
    shape: tuple[int | str, ...]

    def batched(self, model: Path) -> tuple[int, ...]:
        """The dims after the batch dim; the first dim of `model`'s tensor must be symbolic and the others fixed."""
        if not self.shape or not isinstance(self.shape[0], str):
            raise PackageError(f"{model}: {self.name!r} has shape {list(self.shape)}: its first dim is not a batch dim")
        rest = self.shape[1:]
        if not all(isinstance(d, int) for d in rest):
            raise PackageError(f"{model}: {self.name!r} has shape {list(self.shape)}: only the first dim may vary")
        return tuple(int(d) for d in rest)


@dataclass(frozen=True)
class Source:
    """A verified model: the bytes that were hashed, the files that travel with them, and the graph's I/O."""

    model: Path
    data: bytes
    sha256: str
    sidecar: Path
    probes: Probes
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def add_checkfiles(self, model: Path) -> None:
        """Put the sidecar and the probes beside `model` (a copy of these bytes), where `circlefit verify` looks."""
        probes = self.probes.file.relative_to(self.sidecar.parent)  # as the sidecar names it
        for src, dst in ((self.sidecar, sidecar_path(model)), (self.probes.file, model.parent / probes)):
            if dst.exists():
                raise PackageError(f"{dst}: the package format already wrote this file; refusing to overwrite it")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def load_source(model: str | Path) -> Source:
    """Verify `model` (a file or a directory holding one); the package uses the bytes that were verified."""
    checked = verify(model)
    data = checked.data
    io = describe_io(onnx.load_from_string(data))

    def tensors(kind: str) -> tuple[Tensor, ...]:
        return tuple(Tensor(t["name"], t["dtype"], tuple(t["shape"])) for t in io[kind])

    return Source(
        checked.model, data, checked.sha256, checked.sidecar, checked.probes, tensors("inputs"), tensors("outputs")
    )


@dataclass(frozen=True)
class Packaged:
    """What `package` wrote: the format, the directory, and the model file in it that `circlefit verify` passed."""

    format: str
    out: Path
    model: Path
    sha256: str

    def summary(self) -> str:
        files = sorted(str(p.relative_to(self.out)) for p in self.out.rglob("*") if p.is_file())
        return (
            f"{self.out}: {self.format} package of model sha256 {self.sha256[:12]}…, verified in place "
            f"(circlefit verify {self.model.parent}): {', '.join(files)}"
        )


def _refuse_existing(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PackageError(f"{out}: exists and is not a directory; choose a new or empty directory for --out")
    if out.is_dir() and any(out.iterdir()):
        raise PackageError(f"{out}: exists and is not empty; a package goes into a new or empty directory")


@contextlib.contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty directory to fill; on success it becomes `out`, on any failure nothing is there.

    `out` must be new or an empty directory: a package never mixes with, or replaces, other files.
    The rest is circlefit.io.atomic_dir: a locked temp sibling, every file fsynced, one rename.
    """
    out = Path(out)
    _refuse_existing(out)
    with atomic_dir(out) as tmp:
        yield tmp
        _refuse_existing(out)  # again: something may have written there meanwhile


def write_package(fmt: str, source: Source, out: str | Path, model: str, fill: Callable[[Path], None]) -> Packaged:
    """Write a package into `out`, all or nothing: `fill(tmp)` writes the format's files, with the model at
    `model` (a relative path); then the model must be the verified bytes, the sidecar and probes go beside
    it, and `circlefit verify` must pass on it there before the directory takes its final name."""
    out = Path(out)
    with staged_dir(out) as tmp:
        fill(tmp)
        written = tmp / model
        if not written.is_file() or written.read_bytes() != source.data:
            raise PackageError(
                f"{out}: the {fmt} package's {model} is not byte-identical to the verified {source.model} "
                "(the format re-serialized it); nothing was written"
            )
        source.add_checkfiles(written)
        verify(written)
    return Packaged(fmt, out, out / model, source.sha256)
