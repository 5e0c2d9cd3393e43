"""--resume continues exactly: N iterations, stop, resume, M more == N + M uninterrupted, bit for bit on the CPU."""
import json

import torch
from semask_models.checkpoint import read_weights
from semask_models.config import load_config
from semask_models.train import Trainer

from tests.training.fakes import TINY

# drop path, photometric distortion, random crops and flips are all on: every source of randomness is exercised.
SETS = TINY + ["train.max_iters=6", "train.checkpoint_interval=2", "train.accum_steps=2", "train.clip_grad=1.0"]


def _weights(work_dir, it):
    return read_weights(work_dir / "checkpoints" / f"iter_{it:07d}.safetensors")[0]


def test_resume_is_bitwise_identical(tmp_path):
    full = Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path / "full").train()["history"]

    first = Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path / "split").train(stop_at=4)["history"]
    # the resumed half loads its data with a worker process: the order and augmentation do not depend on that
    resumed = Trainer(load_config("synthetic-tiny", SETS + ["data.num_workers=1"]), work_dir=tmp_path / "split",
                      resume=True)
    assert resumed.start_iter == 4
    second = resumed.train()["history"]

    assert len(full) == 6 and first + second == full  # exact float equality of every loss
    a, b = _weights(tmp_path / "full", 6), _weights(tmp_path / "split", 6)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    iters = [r["iter"] for r in map(json.loads, (tmp_path / "split" / "log.jsonl").read_text().splitlines())
             if "loss" in r]
    assert iters == [1, 2, 3, 4, 5, 6]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    trainer = Trainer(load_config("synthetic-tiny", TINY + ["train.max_iters=1"]), work_dir=tmp_path, resume=True)
    assert trainer.start_iter == 0
