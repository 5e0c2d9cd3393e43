"""Checkpoints: safetensors weights + a weights_only state file, atomic writes, clear refusals."""
import json
import os
import pickle

import pytest
import semask_models.checkpoint as ck
import torch
from semask_models.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_weights,
    read_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from semask_models.zoo import build_model
from tests.training.fakes import tiny_model as _model


def _state(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))["loss"].backward()
    opt.step()
    return {"optimizer": opt.state_dict(), "scheduler": {"last_iter": 3}, "rng": [rng_state()]}


def test_roundtrip_and_weights_only(tmp_path):
    model = _model()
    weights, state_path = save_checkpoint(tmp_path / "checkpoints", 3, model, _state(model))
    assert weights.name == "iter_0000003.safetensors" and state_path.name == "iter_0000003.state.pt"
    raw = torch.load(state_path, weights_only=True)  # plain tensors and containers only
    assert raw["iter"] == 3 and raw["format"] == "semask_models.train_state"
    other = _model(seed=1)
    meta = load_weights(other, weights)
    assert meta["iter"] == "3"
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    assert latest_checkpoint(tmp_path) == (weights, state_path)
    assert read_state(state_path)["scheduler"] == {"last_iter": 3}


def test_keep_last_and_latest_pointer(tmp_path):
    model = _model()
    for it in (1, 2, 3):
        save_checkpoint(tmp_path / "checkpoints", it, model, {}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "iter_0000002.safetensors", "iter_0000002.state.pt", "iter_0000003.safetensors", "iter_0000003.state.pt",
        "latest.json"]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["iter"] == 3


@pytest.mark.parametrize("crash_in", ["weights", "state"])
def test_crash_during_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, crash_in):
    model = _model()
    good = save_checkpoint(tmp_path / "checkpoints", 1, model, {})

    def crash(*args, **kwargs):
        with open(args[1], "wb") as f:  # (obj, path): a partial temporary file, then the crash
            f.write(b"half a file")
        raise OSError("disk full")

    if crash_in == "weights":
        import safetensors.torch
        monkeypatch.setattr(safetensors.torch, "save_file", crash)
    else:
        monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "checkpoints", 2, model, {})
    assert latest_checkpoint(tmp_path) == good
    load_weights(_model(), good[0])
    read_state(good[1])
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if ".tmp" in p.name]


def test_truncated_files_are_refused_by_name(tmp_path):
    model = _model()
    weights, state_path = save_checkpoint(tmp_path, 1, model, {})
    for path in (weights, state_path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="iter_0000001.safetensors"):
        load_weights(model, weights)
    with pytest.raises(CheckpointError, match="iter_0000001.state.pt"):
        read_state(state_path)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, ("PWNED_BY_CHECKPOINT",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_in_a_checkpoint_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.state.pt"
    torch.save({"format": "semask_models.train_state", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        read_state(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(CheckpointError):
        read_state(tmp_path / "plain.pkl")
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file
    model = _model()
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a semask_models training checkpoint"):
        load_weights(model, tmp_path / "foreign.safetensors")
    torch.save({"something": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a semask_models training state"):
        read_state(tmp_path / "foreign.pt")
    weights, _ = save_checkpoint(tmp_path, 1, model, {})
    other = build_model("semask_swin_t_fpn", num_classes=4, embed_dim=8, depths=(1, 1, 1, 1),
                        num_heads=(1, 1, 1, 1), window_size=2, head_channels=8)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(other, weights)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="latest.json"):
        latest_checkpoint(tmp_path)


def test_rng_state_roundtrip():
    import random

    import numpy as np
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
