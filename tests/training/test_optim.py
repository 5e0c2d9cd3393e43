"""AdamW parameter groups and the poly + linear warmup schedule (mmcv semantics)."""
import pytest
import torch
from semask_models.config import load_config
from semask_models.optim import PolyWarmupLR, build_optimizer, build_scheduler, param_groups
from semask_models.zoo import build_model


def _tiny():
    return build_model("semask_swin_t_fpn", num_classes=3, embed_dim=8, depths=(1, 1, 1, 1),
                       num_heads=(1, 1, 1, 1), window_size=2, head_channels=8)


def test_no_weight_decay_on_norms_and_position_tables():
    model = _tiny()
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert no_decay and all(("norm" in n or "relative_position_bias_table" in n) for n in no_decay)
    assert "backbone.patch_embed.norm.weight" in no_decay and "backbone.norm3.bias" in no_decay
    assert "backbone.layers.0.semantic_layer.norm1.weight" in no_decay
    assert any("relative_position_bias_table" in n for n in no_decay)
    assert "decode_head.scale_heads.0.0.bn.weight" in decay  # head BN keeps weight decay, as officially
    assert any(n.endswith("gamma") for n in decay)
    assert len(decay) + len(no_decay) == len(names)


@pytest.mark.parametrize("config, lr, wd", [("semask_swin_t_fpn_ade20k", 1e-4, 1e-4),
                                            ("semask_swin_b_fpn_cityscapes", 1e-3, 0.05)])
def test_optimizer_from_config(config, lr, wd):
    opt = build_optimizer(_tiny(), load_config(config)["train"])
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == [lr, lr]
    assert [g["weight_decay"] for g in opt.param_groups] == [wd, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_poly_with_linear_warmup():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    s = PolyWarmupLR(opt, max_iters=80000, power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6)
    base = 1e-4

    def lr(it):
        s.set_iter(it)
        return opt.param_groups[0]["lr"]

    assert lr(0) == pytest.approx(base * 1e-6)                      # warmup starts at ratio x the poly lr
    k = (1 - 750 / 1500) * (1 - 1e-6)
    assert lr(750) == pytest.approx(base * (1 - 750 / 80000) * (1 - k))
    assert lr(1500) == pytest.approx(base * (1 - 1500 / 80000))     # warmup over
    assert lr(40000) == pytest.approx(base / 2)
    assert lr(79999) == pytest.approx(base / 80000)
    assert lr(80000) == 0.0
    state = s.state_dict()
    s2 = build_scheduler(opt, {"max_iters": 80000, "power": 1.0, "min_lr": 0.0, "warmup_iters": 1500,
                               "warmup_ratio": 1e-6})
    s2.load_state_dict(state)
    assert s2.last_iter == 80000
