"""Checkpoint files that are not what their name says, or were altered, get a message that says so: a numpy
pickle named .pth, a torch zip named .pkl (semask-eval: one error line, no traceback), a file of this version
whose SHA-256 entry was stripped (refused, where older files without one still load with a warning)."""
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from semask_models.checkpoints import training as ck
from semask_models.checkpoints.convert import read_state_dict
from semask_models.checkpoints.training import CheckpointError, read_state, read_weights, save_checkpoint
from tests.training.fakes import tiny_model


def test_a_numpy_pickle_named_pth_is_named_as_such(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(3, np.float32)}}))
    with pytest.raises(ValueError, match="is a pickle of numpy arrays .*name it .pkl"):
        read_state_dict(path)
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(3, np.float32)}, "x": print}))  # code: still refused
    with pytest.raises(ValueError, match="would run code"):
        read_state_dict(path)


def test_stripped_checksums_are_refused_in_files_of_this_version(tmp_path):
    weights, state = save_checkpoint(tmp_path, 3, tiny_model(), {"scheduler": {"last_iter": 3}})
    meta = read_weights(weights)[1]
    assert meta[ck.CHECKSUMMED] == "sha256"
    stripped = {k: v for k, v in meta.items() if k != "sha256"}
    save_file(load_file(weights), weights, metadata=stripped)
    with pytest.raises(CheckpointError, match="SHA-256 entry was removed"):
        read_weights(weights)
    full = torch.load(state, weights_only=True)
    del full["sha256"]
    torch.save(full, state)
    with pytest.raises(CheckpointError, match="SHA-256 entry was removed"):
        read_state(state)
    # a file of an older version (neither entry) still loads, with a warning
    del full[ck.CHECKSUMMED]
    torch.save(full, state)
    assert read_state(state)["iter"] == 3
    save_file(load_file(weights), weights, metadata={k: v for k, v in stripped.items() if k != ck.CHECKSUMMED})
    assert read_weights(weights)[1]["format"] == ck.WEIGHTS_FORMAT
