"""Weights files are byte-stable: the same model always hashes the same (dvc.lock does not churn)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save

from circlefit.checkpoint import _sorted_header, load_model, save_model
from circlefit.config import ModelConfig
from circlefit.model import CircleModel


class _Pairs(list):
    """A JSON object as its (key, value) pairs, in file order."""


def _header(blob: bytes) -> tuple[int, _Pairs]:
    size = int.from_bytes(blob[:8], "little")
    return size, json.loads(blob[8 : 8 + size], object_pairs_hook=_Pairs)


def _keys_sorted(node) -> bool:
    if not isinstance(node, _Pairs):
        return True
    keys = [k for k, _ in node]
    return keys == sorted(keys) and all(_keys_sorted(v) for _, v in node)


def test_sorted_header_reorders_keys_and_keeps_layout():
    tensors = {"b": torch.arange(3, dtype=torch.float32), "a": torch.ones(2, 2)}
    blob = save(tensors, metadata={"zeta": "1", "alpha": 'é "q"'})
    size = int.from_bytes(blob[:8], "little")
    # The worst case a hash map can emit: every level in reverse-sorted order.
    obj = json.loads(blob[8 : 8 + size], object_pairs_hook=lambda pairs: dict(sorted(pairs, reverse=True)))
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    unsorted = blob[:8] + text.ljust(size, b" ") + blob[8 + size :]
    assert not _keys_sorted(_header(unsorted)[1])

    fixed = _sorted_header(unsorted)
    assert len(fixed) == len(blob) and fixed[8 + size :] == blob[8 + size :]
    assert _keys_sorted(_header(fixed)[1])
    assert fixed == _sorted_header(blob)  # both orders land on the same bytes


def test_saved_weights_have_a_canonical_header_and_round_trip(tmp_path):
    model = CircleModel(ModelConfig(hidden=(8, 4), activation="relu"))
    path = tmp_path / "w.safetensors"
    save_model(model, path)
    blob = path.read_bytes()
    assert _keys_sorted(_header(blob)[1])
    assert _sorted_header(blob) == blob
    loaded = load_model(path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
