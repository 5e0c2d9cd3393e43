"""Two gloo processes on the CPU: DDP keeps the ranks' weights identical, and the sharded evaluation (confusion
matrices summed with all_reduce) gives the metrics of a single-process evaluation."""
import json
import socket

import torch
import torch.multiprocessing as mp
from semask_models.builder import build_segmentor
from semask_models.checkpoint import load_weights, read_weights
from semask_models.config import load_config
from semask_models.data import build_dataset
from semask_models.distributed import DistInfo
from semask_models.evaluate import evaluate

from tests.training import ddp_worker
from tests.training.fakes import TINY

SETS = TINY + ["train.max_iters=3", "train.eval_interval=3", "train.checkpoint_interval=3",
               "data.synthetic.num_val=5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_identical(tmp_path):
    mp.spawn(ddp_worker.run, args=(2, _free_port(), str(tmp_path), SETS), nprocs=2, join=True)
    a, _ = read_weights(tmp_path / "rank0.safetensors")
    b, _ = read_weights(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved, _ = read_weights(tmp_path / "checkpoints" / "iter_0000003.safetensors")
    assert all(torch.equal(saved[k], a[k]) for k in a)
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4  # rank 0 alone writes: 3 iterations + eval

    cfg = load_config("synthetic-tiny", SETS)
    distributed = json.loads((tmp_path / "metrics.json").read_text())
    val = build_dataset(cfg["data"], "val")
    model = build_segmentor(cfg, val.num_classes)
    load_weights(model, tmp_path / "checkpoints" / "iter_0000003.safetensors")
    single = evaluate(model, val, cfg, DistInfo(), progress=False)
    assert distributed["num_pixels"] == single["num_pixels"]
    for key in ("mIoU", "mAcc", "aAcc", "IoU"):
        assert distributed[key] == single[key], key
