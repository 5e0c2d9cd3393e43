"""Checkpoint integrity (issue 15): pruning never removes the checkpoint just written (item 1), a checksum refuses
corrupted files (item 8), a killed writer's temporary files are cleaned up (item 9), a full disk says ENOSPC
(item 10)."""
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import semask_models.checkpoint as ck
import torch
from semask_models.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_weights,
    read_state,
    read_weights,
    save_checkpoint,
)
from semask_models.convert import load_checkpoint
from tests.training.fakes import tiny_model as _model


def test_pruning_keeps_the_checkpoint_just_written_even_below_older_iterations(tmp_path):
    # a second run into the same folder (or a resume behind a stale later checkpoint) writes a smaller iteration
    model = _model()
    save_checkpoint(tmp_path / "checkpoints", 8000, model, {}, keep=1)
    weights, state = save_checkpoint(tmp_path / "checkpoints", 2, model, {}, keep=1)
    assert weights.is_file() and state.is_file()
    assert latest_checkpoint(tmp_path) == (weights, state)
    load_weights(_model(1), weights)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "iter_0000002.safetensors", "iter_0000002.state.pt", "latest.json"]
    save_checkpoint(tmp_path / "checkpoints", 4, model, {}, keep=2)  # keep counts the new one as the newest
    assert [p.name for p in ck.list_checkpoints(tmp_path / "checkpoints")] == [
        "iter_0000002.safetensors", "iter_0000004.safetensors"]


def _zero_inside(path, probe: bytes, count=64):
    data = bytearray(path.read_bytes())
    at = data.find(probe)
    assert at >= 0, "probe bytes not found in the file"
    data[at:at + count] = bytes(count)
    path.write_bytes(bytes(data))


def test_a_weights_file_with_zeroed_tensor_bytes_is_refused(tmp_path):
    model = _model()
    with torch.no_grad():
        model.decode_head.conv_seg.weight.fill_(0.75)
    weights, _ = save_checkpoint(tmp_path, 1, model, {})
    assert read_weights(weights)[1]["sha256"]
    _zero_inside(weights, torch.full((16,), 0.75).numpy().tobytes())
    with pytest.raises(CheckpointError, match=r"iter_0000001.safetensors is corrupted"):
        load_weights(_model(), weights)
    with pytest.raises(CheckpointError, match="corrupted"):  # the convert path reads it too
        load_checkpoint(_model(), weights)


def test_a_state_file_with_zeroed_tensor_bytes_is_refused(tmp_path):
    probe = torch.arange(512, dtype=torch.float32) + 0.5
    _, state = save_checkpoint(tmp_path, 1, _model(), {"optimizer": {"probe": probe}})
    assert torch.equal(read_state(state)["optimizer"]["probe"], probe)
    _zero_inside(state, probe[100:].numpy().tobytes()[:256])
    with pytest.raises(CheckpointError, match=r"iter_0000001.state.pt is corrupted"):
        read_state(state)


def test_files_without_a_checksum_still_load(tmp_path):
    # checkpoints of earlier versions have none: loaded (with a warning), not refused
    from safetensors.torch import save_file
    model = _model()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, tmp_path / "old.safetensors", metadata={"format": ck.WEIGHTS_FORMAT, "iter": "1"})
    load_weights(_model(1), tmp_path / "old.safetensors")
    torch.save({"format": ck.STATE_FORMAT, "version": ck.STATE_VERSION, "iter": 1}, tmp_path / "old.state.pt")
    assert read_state(tmp_path / "old.state.pt")["iter"] == 1


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_save(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    stale = [ckpt / f".iter_0000002.safetensors.tmp{dead_pid}", ckpt / f".latest.json.tmp{dead_pid}"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    live = ckpt / f".iter_0000003.safetensors.tmp{os.getppid()}"  # a live writer's file is not touched
    live.write_bytes(b"being written")
    save_checkpoint(ckpt, 4, _model(), {})
    assert not any(p.exists() for p in stale)
    assert live.exists()


def test_a_full_disk_names_enospc_and_the_file(tmp_path, monkeypatch):
    model = _model()

    def torch_save_on_full_disk(obj, path):  # what torch.save raises: no errno, no mention of the disk
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(ck.torch, "save", torch_save_on_full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    with pytest.raises(OSError) as e:
        save_checkpoint(tmp_path, 1, model, {})
    assert e.value.errno == errno.ENOSPC
    assert "ENOSPC" in str(e.value) and "iter_0000001.state.pt" in str(e.value)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_an_enospc_oserror_is_reported_as_such(tmp_path):
    def write(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"ENOSPC.*metrics.json") as e:
        ck.atomic_write(tmp_path / "metrics.json", write)
    assert e.value.errno == errno.ENOSPC


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def write(tmp):
        raise PermissionError(errno.EACCES, "read-only")

    with pytest.raises(PermissionError, match="read-only"):
        ck.atomic_write(tmp_path / "x.json", write)


def test_pointer_and_checksums_roundtrip(tmp_path):
    model = _model()
    weights, state = save_checkpoint(tmp_path / "checkpoints", 3, model, {"scheduler": {"last_iter": 3}})
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["iter"] == 3
    assert read_state(state)["scheduler"] == {"last_iter": 3} and "sha256" not in read_state(state)
    load_weights(_model(1), weights)
