"""safetensors weights: round trip, stable bytes, and refusal of anything else (pickles above all)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from circlefit.config import ModelConfig
from circlefit.data.normalize import Stats
from circlefit.io import DataError, atomic_file
from circlefit.model.network import CircleModel, build_model
from circlefit.model.weights import load_model, save_weights
from circlefit.numeric.mlp64 import Weights

from conftest import PicklePayload

STATS = Stats(mean=(0.1, -0.2, 133.0), std=(11.5, 11.4, 66.0), count=10, min_std=1e-6)


def model(hidden: tuple[int, ...] = (8, 4), activation: str = "tanh") -> CircleModel:
    return build_model(ModelConfig(hidden=hidden, activation=activation), STATS, torch.Generator().manual_seed(5))  # type: ignore[arg-type]


def save_model(m: CircleModel, path: Path) -> None:
    save_weights(Weights.of(m), path)


def test_round_trip(tmp_path: Path) -> None:
    m = model()
    path = tmp_path / "weights.safetensors"
    save_model(m, path)
    back = load_model(path)
    assert back.cfg == m.cfg and not back.training
    assert back.state_dict().keys() == m.state_dict().keys()
    for name, t in m.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name
    xy = torch.from_numpy(np.random.default_rng(0).uniform(-20, 20, (64, 2)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(back(xy), m(xy))


def test_bytes_are_stable_and_independent_of_the_file_name(tmp_path: Path) -> None:
    # safetensors keeps metadata in a hash map with a random order per call: with two keys,
    # eight saves would all agree by chance with probability 2^-7.
    m = model()
    for i in range(8):
        save_model(m, tmp_path / f"{i}.safetensors")
    with atomic_file(tmp_path / "atomic.safetensors") as tmp:
        save_model(m, tmp)
    save_model(load_model(tmp_path / "0.safetensors"), tmp_path / "reloaded.safetensors")
    blobs = {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())}
    assert len(set(blobs.values())) == 1, list(blobs)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.safetensors"
    with pytest.raises(DataError, match="model file not found") as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: ")


def _assert_refused(path: Path, sentinel: Path) -> None:
    with pytest.raises(DataError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: ") and "refusing to load" in str(info.value), str(info.value)
    assert not sentinel.exists(), "loading ran code from the file"


def _trap_fires(path: Path, sentinel: Path, loader: str) -> None:
    """Prove the payload is live: a pickle loader (in a child process) does create the sentinel."""
    code = f"import pickle, torch; {loader}"
    subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, timeout=600)
    assert sentinel.exists(), "the crafted pickle did not fire; the refusal test would prove nothing"


def test_refuses_a_torch_save_pickle(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "data" / "model" / "weights.safetensors"
    path.parent.mkdir(parents=True)
    torch.save({"net.layers.0.weight": torch.zeros(8, 2), "evil": PicklePayload(sentinel)}, path)
    _assert_refused(path, sentinel)
    # (a file object: torch 2.13's torch.load hands *.safetensors paths to safetensors itself)
    _trap_fires(path, sentinel, "import sys; torch.load(open(sys.argv[1], 'rb'), weights_only=False)")


def test_refuses_a_plain_pickle(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "weights.safetensors"
    path.write_bytes(pickle.dumps(PicklePayload(sentinel)))
    _assert_refused(path, sentinel)
    _trap_fires(path, sentinel, "import sys; pickle.load(open(sys.argv[1], 'rb'))")


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x00" * 7, b"garbage that is not a model", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"],
    ids=["empty", "short", "text", "bad header"],
)
def test_refuses_non_safetensors(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(blob)
    with pytest.raises(DataError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)


def test_refuses_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_model(model(), path)
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(DataError, match="refusing to load") as info:
        load_model(path)
    assert str(path) in str(info.value)


def _tensors(m: CircleModel) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in m.state_dict().items()}


FORMAT = "circlefit-weights/2"


def _meta(hidden: list[int], activation: str = "tanh", fmt: str = FORMAT) -> dict[str, str]:
    header = {"format": fmt, "model": {"hidden": hidden, "activation": activation}}
    return {"circlefit": json.dumps(header, sort_keys=True)}


def test_header_is_one_canonical_metadata_key(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_model(model(), path)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == _meta([8, 4])


def test_refuses_foreign_safetensors_without_the_format_tag(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_tensors(model()), str(path))
    with pytest.raises(DataError, match="format tag"):
        load_model(path)
    save_file(_tensors(model()), str(path), metadata=_meta([8, 4], fmt="circlefit-weights/99"))
    with pytest.raises(DataError, match="circlefit-weights/99"):
        load_model(path)
    old = {"format": "circlefit-weights/1", "model": json.dumps({"hidden": [8, 4], "activation": "tanh"})}
    save_file(_tensors(model()), str(path), metadata=old)  # the first layout: refused by name
    with pytest.raises(DataError, match="format tag None"):
        load_model(path)
    save_file(_tensors(model()), str(path), metadata={"circlefit": "{not json"})
    with pytest.raises(DataError, match="format tag"):
        load_model(path)


@pytest.mark.parametrize(
    ("meta", "fragment"),
    [
        (_meta([16, 4]), "do not match"),  # recorded architecture != tensors
        (_meta([8, 4], "relu6"), "model.activation"),
        (_meta([8, 0]), "model.hidden[1]"),
        ({"circlefit": json.dumps({"format": FORMAT})}, "do not match"),  # no architecture at all
        ({"circlefit": json.dumps({"format": FORMAT, "model": [8, 4]})}, "model must be a mapping"),
    ],
    ids=["shape mismatch", "bad activation", "bad hidden", "no model", "model not a mapping"],
)
def test_refuses_inconsistent_metadata(tmp_path: Path, meta: dict[str, str], fragment: str) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_tensors(model()), str(path), metadata=meta)
    with pytest.raises(DataError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_refuses_extra_or_missing_tensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    extra = {**_tensors(model()), "backdoor": torch.zeros(1)}
    save_file(extra, str(path), metadata=_meta([8, 4]))
    with pytest.raises(DataError, match="backdoor"):
        load_model(path)
    missing = {k: v for k, v in _tensors(model()).items() if k != "label_std"}
    save_file(missing, str(path), metadata=_meta([8, 4]))
    with pytest.raises(DataError, match="label_std"):
        load_model(path)


def test_refuses_non_finite_weights(tmp_path: Path) -> None:
    m = model()
    with torch.no_grad():
        m.net.layers[0].weight[0, 0] = float("nan")
    path = tmp_path / "w.safetensors"
    save_model(m, path)
    with pytest.raises(DataError, match=r"tensor net.layers.0.weight has non-finite values") as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}: ")
