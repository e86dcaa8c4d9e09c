"""Print the part of the lock files that one install needs, as a hash-pinned requirements file.

    python scripts/locked.py [--torch cpu|cuda|none] [EXTRA ...]   > reqs.txt
    pip install --require-hashes --no-deps -r reqs.txt

requirements/lock.txt holds pyproject.toml's dependencies and all its extras (scripts/lock.sh).
An install takes the base dependencies plus the extras it names, and everything they need: the
closure over the lock's own "# via" annotations, in which each package names the packages that
require it. `--torch cuda` swaps the CPU torch for requirements/lock-cuda.txt's CUDA build and
adds the nvidia-* and triton packages it needs; `--torch none` leaves torch out (the install
script then installs the torch spec it was given). scripts/install.sh is the caller; stdlib only,
as it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
CUDA_LOCK = ROOT / "requirements" / "lock-cuda.txt"
PYPROJECT = ROOT / "pyproject.toml"
PROJECT = "circlefit"
TARGET = "CPython 3.11 on Linux x86_64"  # what scripts/lock.sh resolves for

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_PIN = re.compile(rf"({_NAME.pattern})==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503 normalized name: `ruamel.yaml` and `Ruamel_YAML` are both `ruamel-yaml`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Entry:
    name: str  # canonical
    version: str
    lines: list[str]  # the pin line and its --hash lines, as written
    required_by: set[str] = field(default_factory=set)  # canonical names; PROJECT for pyproject

    @property
    def hashes(self) -> list[str]:
        return [line.strip().removesuffix("\\").strip() for line in self.lines if "--hash=" in line]


def parse_lock(path: Path) -> dict[str, Entry]:
    """The entries of a lock written by uv or pip-compile, with their `# via` parents."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    in_via = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if not line[0].isspace() and not line.startswith("#"):
            m = _PIN.match(line)
            if m is None:
                raise ValueError(f"{path.name}: not an exact pin: {line!r}")
            current = Entry(canonical(m.group(1)), m.group(2), [line])
            if current.name in entries:
                raise ValueError(f"{path.name}: {current.name} is pinned twice")
            entries[current.name] = current
            in_via = False
            continue
        text = line.strip()
        if current is None or not (text.startswith("#") or text.startswith("--hash=")):
            continue
        if text.startswith("--hash="):
            current.lines.append(line)
        elif text.startswith("# via"):
            rest = text.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.required_by.add(_parent(rest))
        elif in_via and text.startswith("#   "):
            current.required_by.add(_parent(text.removeprefix("#").strip()))
        else:
            in_via = False
    return entries


def _parent(annotation: str) -> str:
    """`dvc`, `circlefit (pyproject.toml)` or `-c requirements/torch-cpu.in` -> a canonical name."""
    if annotation.startswith("-"):
        return annotation  # a constraint file: no package
    m = _NAME.match(annotation)
    if m is None:
        raise ValueError(f"unreadable annotation {annotation!r}")
    return canonical(m.group(0))


def direct_requirements(extras: list[str], pyproject: Path = PYPROJECT) -> set[str]:
    """Canonical names of the base dependencies plus those of the named extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"locked.py: no such extra {', '.join(unknown)} (pyproject has {', '.join(optional)})")
    specs = list(project["dependencies"])
    for extra in extras:
        specs += optional[extra]
    names = set()
    for spec in specs:
        m = _NAME.match(spec.strip())
        if m is None:
            raise ValueError(f"pyproject.toml: unreadable requirement {spec!r}")
        names.add(canonical(m.group(0)))
    return names


def closure(entries: dict[str, Entry], roots: set[str]) -> set[str]:
    """`roots` and every entry that a member of the set requires (read off `required_by`)."""
    missing = sorted(roots - set(entries))
    if missing:
        raise SystemExit(f"locked.py: {', '.join(missing)} not in the lock; run: bash scripts/lock.sh")
    selected = set(roots)
    grew = True
    while grew:
        grew = False
        for entry in entries.values():
            if entry.name not in selected and entry.required_by & selected:
                selected.add(entry.name)
                grew = True
    return selected


def select(extras: list[str], torch: str = "cpu") -> list[Entry]:
    """The entries an install of the base dependencies plus `extras` needs, sorted by name."""
    if torch not in ("cpu", "cuda", "none"):
        raise ValueError(f"torch must be cpu, cuda or none, not {torch!r}")
    entries = parse_lock(LOCK)
    names = closure(entries, direct_requirements(extras))
    chosen = {name: entries[name] for name in names}
    if torch != "cpu":
        chosen.pop("torch", None)
    if torch == "cuda":
        cuda = parse_lock(CUDA_LOCK)
        for name in closure(cuda, {"torch"}):
            chosen.setdefault(name, cuda[name])
    return [chosen[name] for name in sorted(chosen)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", help="extras of pyproject.toml, e.g. dev runtimes")
    parser.add_argument("--torch", choices=["cpu", "cuda", "none"], default="cpu")
    args = parser.parse_args(argv)
    extras = [e for arg in args.extras for e in re.split(r"[,\s]+", arg) if e]
    here = f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]}"
    if (here, sys.platform, platform.machine()) != ("CPython 3.11", "linux", "x86_64"):
        print(
            f"locked.py: the lock is resolved for {TARGET}; this is {here} on {sys.platform} "
            f"{platform.machine()}. CIRCLEFIT_UNLOCKED=1 bash scripts/install.sh installs from "
            "pyproject.toml's ranges instead.",
            file=sys.stderr,
        )
        return 2
    entries = select(extras, args.torch)
    print(f"# scripts/locked.py --torch {args.torch} {' '.join(extras)}".rstrip())
    for entry in entries:
        print("\n".join(entry.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
