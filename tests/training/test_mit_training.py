"""SeMask-MiT trains on the CPU: synthetic-tiny-mit learns to a stated mIoU (main and prior losses both fall),
semask-eval reproduces it, the run's weights load as a whole segmentor, and --resume continues bit for bit."""
import json

import pytest
import torch

import semask_models as sm
from semask_models.checkpoint import read_weights
from semask_models.cli import main as cli_main
from semask_models.config import load_config
from semask_models.convert import load_checkpoint
from semask_models.train import Trainer

# The shipped synthetic-tiny-mit as it is (400 iterations, batch 8, 64² crops, seed 0): measured 0.882 mIoU, about
# 30 s of CPU time (100 s wall on the shared 2-core machine); at iteration 200 of that run 0.83, while a run cut
# to 200 iterations (its schedule ending there) reached 0.64. Background everywhere scores about 0.16 (5 classes).
SHORT = ["train.progress=false"]
ITERS = 400
MIN_MIOU = 0.75


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("synthetic-tiny-mit")
    assert cli_main(["train", "synthetic-tiny-mit", "--work-dir", str(work), *_sets(SHORT)]) == 0
    return work


def test_short_run_learns(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["iter"] == ITERS and metrics["mIoU"] >= MIN_MIOU, metrics
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert len(losses) == ITERS // 10
    for key in ("loss_ce", "loss_cate"):  # the SegFormer head and the SeMask prior branch both learn
        assert losses[-1][key] < 0.6 * losses[0][key], key


def test_eval_reproduces_and_weights_load_as_a_segmentor(trained, tmp_path):
    out = tmp_path / "eval"
    assert cli_main(["eval", "synthetic-tiny-mit", "--checkpoint", str(trained), "--work-dir", str(out),
                     *_sets(SHORT)]) == 0
    run = json.loads((trained / "metrics.json").read_text())
    evaluated = json.loads((out / "eval_whole.json").read_text())
    assert evaluated["mIoU"] == run["mIoU"] and evaluated["IoU"] == run["IoU"]
    cfg = load_config("synthetic-tiny-mit")
    model = sm.build_model(cfg["model"], 5, **cfg["model_overrides"])
    report = load_checkpoint(model, trained / "checkpoints" / "iter_0000400.safetensors")
    assert report.complete


MIT_TINY = ["data.synthetic.size=[40,40]", "data.synthetic.num_train=16", "data.synthetic.num_val=4",
            "data.num_workers=0", "augment.scale=[40,40]", "augment.crop=[32,32]", "test.scale=[40,40]",
            "train.batch_size=4", "train.progress=false", "train.warmup_iters=2", "train.log_interval=1",
            "train.eval_interval=1000", "model_overrides.drop_path_rate=0.1", "train.max_iters=6",
            "train.checkpoint_interval=2", "train.accum_steps=2", "train.clip_grad=1.0"]


def test_resume_is_bitwise_identical(tmp_path):
    full = Trainer(load_config("synthetic-tiny-mit", MIT_TINY), work_dir=tmp_path / "full").train()["history"]
    first = Trainer(load_config("synthetic-tiny-mit", MIT_TINY), work_dir=tmp_path / "split").train(stop_at=4)
    resumed = Trainer(load_config("synthetic-tiny-mit", MIT_TINY), work_dir=tmp_path / "split", resume=True)
    assert resumed.start_iter == 4
    second = resumed.train()["history"]
    assert len(full) == 6 and first["history"] + second == full
    a = read_weights(tmp_path / "full" / "checkpoints" / "iter_0000006.safetensors")[0]
    b = read_weights(tmp_path / "split" / "checkpoints" / "iter_0000006.safetensors")[0]
    assert a.keys() == b.keys() and any(".semantic_layer" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("dataset", ["ade20k", "cityscapes"])
@pytest.mark.parametrize("name", [f"{p}mit_b{v}_segformer" for p in ("", "semask_") for v in range(6)])
def test_segformer_recipes(name, dataset):
    cfg = load_config(f"{name}_{dataset}")
    t, aug = cfg["train"], cfg["augment"]
    assert cfg["model"] == name
    assert (t["max_iters"], t["warmup_iters"], t["warmup_ratio"], t["power"], t["min_lr"]) == (160000, 1500, 1e-6,
                                                                                              1.0, 0.0)
    # AdamW 6e-5 on the backbone, the head at × 10, weight decay 0.01, none on norms
    assert (t["lr"] * t["backbone_lr_mult"], t["lr"], t["weight_decay"]) == pytest.approx((6e-5, 6e-4, 0.01))
    assert t["no_decay_keys"] == ["norm"] and t["betas"] == [0.9, 0.999]
    assert aug["ratio_range"] == [0.5, 2.0] and aug["cat_max_ratio"] == 0.75 and aug["flip"] == 0.5
    if dataset == "ade20k":
        side = 640 if "_b5_" in name else 512  # segformer.b5.640x640.ade.160k.py
        assert (t["batch_size"], aug["crop"], aug["scale"], cfg["test"]["mode"]) == (16, [side, side], [2048, side],
                                                                                      "whole")
        assert cfg["test"]["scale"] == [2048, side]
        assert cfg["data"]["num_classes"] == 150
    else:
        assert (t["batch_size"], aug["crop"], aug["scale"]) == (8, [1024, 1024], [2048, 1024])
        assert (cfg["test"]["mode"], cfg["test"]["crop"], cfg["test"]["stride"]) == ("slide", [1024, 1024],
                                                                                     [768, 768])
        assert cfg["data"]["num_classes"] == 19


def test_head_lr_is_ten_times_the_backbone_lr():
    from semask_models.optim import build_optimizer
    cfg = load_config("semask_mit_b0_segformer_ade20k")
    with torch.device("meta"):
        model = sm.build_model(cfg["model"], 150)
    groups = {g["name"]: g for g in build_optimizer(model, cfg["train"]).param_groups}
    assert groups["decay"]["lr"] == pytest.approx(6e-4) and groups["backbone_decay"]["lr"] == pytest.approx(6e-5)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.01
    backbone_ids = {id(p) for g in ("backbone_decay", "backbone_no_decay") for p in groups[g]["params"]}
    assert all(id(p) in backbone_ids for n, p in model.named_parameters() if ".semantic_layer" in n)


@pytest.mark.parametrize("override, key", [("model_overrides.sem_depths=[1,1]", "model_overrides.sem_depths"),
                                           ("model_overrides.window_size=7", "window_size"),
                                           ("model_overrides.sr_ratios=[8,4,0,1]", "model_overrides.sr_ratios")])
def test_mit_model_overrides_are_checked_at_load(override, key):
    from semask_models.config import ConfigError
    with pytest.raises(ConfigError, match=key):
        load_config("synthetic-tiny-mit", [override])
