"""The generated data set on disk: one float32 [N, 3] .npy per split and manifest.json, in one directory.

The generate stage writes it (`write_dataset`); every later stage reads splits with `load_split`
and the facts it needs with `read_manifest`. The file names live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circlefit.config import DataConfig, as_dict
from circlefit.data.generate import SPLITS, Dataset, summarize
from circlefit.io import atomic_dir, dumps_json, json_bool, json_number, load_array, read_json, save_array

__all__ = ["ARRAYS", "MANIFEST", "Manifest", "load_split", "read_manifest", "split_file", "write_dataset"]

ARRAYS = (*SPLITS, "ood", "tutorial")
MANIFEST = "manifest.json"
COLUMNS = ("x", "y", "label")


@dataclass(frozen=True)
class Manifest:
    """What later stages need to know about the data: the training radius and whether test is held out."""

    train_radius: float
    held_out: bool  # false when val/test are the training points (data.source: tutorial)


def _manifest(ds: Dataset, cfg: DataConfig) -> dict[str, Any]:
    return {
        "params": {"data": as_dict(cfg)},
        "train_radius": ds.train_radius,
        "held_out": ds.held_out,
        "columns": list(COLUMNS),
        "dtype": "float32",
        "splits": summarize(ds),
    }


def write_dataset(out: str | Path, ds: Dataset, cfg: DataConfig) -> None:
    """Every array and the manifest, replacing directory `out` in one rename."""
    with atomic_dir(out) as tmp:
        for name in ARRAYS:
            save_array(split_file(tmp, name), getattr(ds, name))
        (tmp / MANIFEST).write_text(dumps_json(_manifest(ds, cfg)), encoding="utf-8")


def split_file(data: str | Path, name: str) -> Path:
    """The .npy file of array `name` (a split, "ood" or "tutorial") in directory `data`."""
    return Path(data) / f"{name}.npy"


def load_split(data: str | Path, name: str, mmap: bool = False) -> np.ndarray:
    """Array `name` as float32 [N, 3] (x, y, label), checked; `mmap` maps it instead of reading it."""
    return load_array(split_file(data, name), len(COLUMNS), mmap=mmap)


def read_manifest(data: str | Path) -> Manifest:
    path = Path(data) / MANIFEST
    obj = read_json(path)
    return Manifest(json_number(obj, "train_radius", path), json_bool(obj, "held_out", path))
