"""patch_timm_swin: same state dict, same outputs and gradients as the stock timm model."""
import copy
import logging

import pytest
import timm
import torch

import semask_kernels as sk
from tests.utils import assert_close


def _pair(name, **kw):
    stock = timm.create_model(name, pretrained=False, **kw)
    with torch.no_grad():  # make the padded tokens' qkv bias and the tables matter
        for n, p in stock.named_parameters():
            if n.endswith("qkv.bias") or n.endswith("relative_position_bias_table"):
                p.normal_(0, 0.2)
    return stock, copy.deepcopy(stock)


def _compare(stock, patched, x, train):
    stock.train(train)
    patched.train(train)
    torch.manual_seed(1)
    expected = stock(x)
    torch.manual_seed(1)
    got = patched(x)
    assert_close(got, expected, name="logits", scale=10)
    g = torch.randn_like(expected)
    expected.backward(g)
    got.backward(g)
    stock_grads = dict(stock.named_parameters())
    for name, p in patched.named_parameters():
        assert_close(p.grad, stock_grads[name].grad, name=f"grad {name}", scale=10)


@pytest.mark.parametrize("level", ["block", "attention"])
def test_swin_tiny_224(level):
    stock, patched = _pair("swin_tiny_patch4_window7_224", drop_path_rate=0.0)
    keys = list(patched.state_dict())
    sk.patch_timm_swin(patched, level=level, backend="reference")
    assert list(patched.state_dict()) == keys
    kinds = {type(m).__name__ for m in patched.modules()}
    assert ("ShiftedWindowAttention" if level == "block" else "WindowAttention") in kinds
    assert not any(type(m).__module__.startswith("timm") and type(m).__name__ == "WindowAttention"
                   for m in patched.modules())
    _compare(stock, patched, torch.randn(1, 3, 224, 224), train=False)


def test_swin_tiny_padded_size_train_mode_with_drop_path():
    """A size that needs padding in every stage (strict_img_size=False), in train mode with stochastic depth
    (same RNG stream in both models)."""
    stock, patched = _pair("swin_tiny_patch4_window7_224", strict_img_size=False, drop_path_rate=0.2)
    sk.patch_timm_swin(patched)
    _compare(stock, patched, torch.randn(2, 3, 200, 264), train=True)


def test_swin_s3_per_stage_windows():
    stock, patched = _pair("swin_s3_tiny_224")
    assert {b.window_size for b in stock.modules() if hasattr(b, "window_size")} >= {(7, 7), (14, 14)}
    sk.patch_timm_swin(patched)
    _compare(stock, patched, torch.randn(1, 3, 224, 224), train=False)


def test_unsupported_blocks_are_left_alone_with_a_reason(caplog):
    model = timm.create_model("swin_tiny_patch4_window7_224", attn_drop_rate=0.1)
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_timm_swin(model)
    assert "attention dropout 0.1" in caplog.text
    assert not any(isinstance(m, (sk.nn.WindowAttention, sk.nn.ShiftedWindowAttention)) for m in model.modules())


def test_patching_twice_is_harmless_and_bad_level_is_rejected(caplog):
    model = timm.create_model("swin_tiny_patch4_window7_224")
    sk.patch_timm_swin(model)
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_timm_swin(model)
    assert "already patched" in caplog.text
    with pytest.raises(ValueError, match="level must be one of"):
        sk.patch_timm_swin(model, level="model")


def test_optimizer_built_before_patching_still_trains_the_same_parameters():
    model = timm.create_model("swin_tiny_patch4_window7_224")
    params = {id(p) for p in model.parameters()}
    sk.patch_timm_swin(model)
    assert {id(p) for p in model.parameters()} == params
