"""Run configs: the shipped official recipes, overrides, validation."""
import pytest
import torch
from semask_models.builder import build_segmentor
from semask_models.cli import main as cli_main
from semask_models.config import ConfigError, load_config, shipped_configs

VARIANTS = "tsbl"
DATASETS = ("ade20k", "cityscapes", "cocostuff10k")


def test_shipped_configs():
    names = set(shipped_configs())
    expected = {f"semask_swin_{v}_fpn_{d}" for v in VARIANTS for d in DATASETS} | {"synthetic-tiny"}
    assert expected <= names


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_official_recipe(variant, dataset):
    cfg = load_config(f"semask_swin_{variant}_fpn_{dataset}")
    t, aug = cfg["train"], cfg["augment"]
    assert cfg["model"] == f"semask_swin_{variant}_fpn"
    assert (t["max_iters"], t["warmup_iters"], t["power"], t["min_lr"]) == (80000, 1500, 1.0, 0.0)
    assert (t["eval_interval"], t["checkpoint_interval"]) == (8000, 8000)
    assert t["no_decay_keys"] == ["norm", "relative_position_bias_table", "absolute_pos_embed"]
    assert aug["flip"] == 0.5 and aug["photometric"]
    assert aug["mean"] == [123.675, 116.28, 103.53] and aug["std"] == [58.395, 57.12, 57.375]
    large = variant == "l"
    if dataset == "cityscapes":
        assert (t["lr"], t["weight_decay"], t["batch_size"]) == (1e-3, 0.05, 8)
        assert t["warmup_ratio"] == (1e-6 if variant == "b" else 1e-5)
        assert aug["ratio_range"] == [0.5, 2.0] and aug["scale"] == [2048, 1024] and aug["crop"] == [768, 768]
        assert aug["cat_max_ratio"] == 0.75 and cfg["test"]["scale"] == [2048, 1024]
        assert cfg["data"]["num_classes"] == 19
    else:
        assert (t["lr"], t["weight_decay"], t["batch_size"], t["warmup_ratio"]) == (1e-4, 1e-4, 16, 1e-6)
        assert aug["ratio_range"] is None and aug["ratios"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        assert aug["crop"] == ([640, 640] if large else [512, 512])
        assert aug["scale"] == cfg["test"]["scale"] == ([2560, 640] if large else [2048, 512])
        assert cfg["data"]["num_classes"] == (150 if dataset == "ade20k" else 171)
        assert aug["cat_max_ratio"] == (0.75 if (dataset, variant) == ("ade20k", "t") else 1.0)
    ohem = dataset == "cocostuff10k" or (dataset, variant) == ("ade20k", "l")
    assert cfg["model_overrides"].get("ohem_min_kept") == (100000 if ohem else None)


def test_cocostuff_sets_k_171_in_the_backbone_too():
    cfg = load_config("semask_swin_t_fpn_cocostuff10k")
    with torch.device("meta"):
        model = build_segmentor(cfg, cfg["data"]["num_classes"])
    for layer in model.backbone.layers:
        assert layer.semantic_layer.class_injection[0].mlp_cls_q.weight.shape[0] == 171
    assert model.decode_head.conv_seg.weight.shape[0] == 171


def test_overrides_and_coercion(tmp_path):
    cfg = load_config("synthetic-tiny", ["train.lr=1e-3", "train.max_iters=7", "model_overrides.embed_dim=24",
                                         "augment.crop=[48, 40]"])
    assert cfg["train"]["lr"] == 1e-3 and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["max_iters"] == 7 and cfg["model_overrides"]["embed_dim"] == 24
    assert cfg["augment"]["crop"] == [48, 40]
    user = tmp_path / "mine.yaml"
    user.write_text("base: semask_swin_t_fpn_ade20k\ntrain:\n  lr: 3e-5\n  batch_size: 8\n")
    cfg = load_config(str(user))
    assert cfg["name"] == "mine" and cfg["train"]["lr"] == 3e-5 and cfg["train"]["batch_size"] == 8
    assert cfg["augment"]["cat_max_ratio"] == 0.75  # inherited


@pytest.mark.parametrize("override, words", [
    (["train.lrr=1"], ["train.lrr"]),
    (["data.typo=1"], ["data.typo"]),
    (["train.lr=fast"], ["train.lr", "number"]),
    (["test.mode=tiles"], ["test.mode"]),
    (["train.batch_size=7", "train.accum_steps=2"], ["batch_size", "accum_steps"]),
    (["oops"], ["key=value"]),
])
def test_bad_config_is_refused_by_name(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("synthetic-tiny", override)
    for w in words:
        assert w in str(e.value)


def test_unknown_config_name_lists_shipped():
    with pytest.raises(ConfigError, match="synthetic-tiny"):
        load_config("no_such_config")


def test_cli_lists_configs(capsys):
    assert cli_main(["configs"]) == 0
    assert "semask_swin_l_fpn_cocostuff10k" in capsys.readouterr().out


def test_pretrained_is_loaded_through_convert(tmp_path):
    cfg = load_config("synthetic-tiny")
    torch.manual_seed(1)
    source = build_segmentor(cfg, 5)
    backbone_only = {k: v for k, v in source.state_dict().items() if k.startswith("backbone.")}
    torch.save(backbone_only, tmp_path / "pretrained.pth")
    torch.manual_seed(2)
    model = build_segmentor({**cfg, "pretrained": str(tmp_path / "pretrained.pth")}, 5)
    for k, v in backbone_only.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(model.decode_head.conv_seg.weight, source.decode_head.conv_seg.weight)
