"""The nn modules: timm-compatible names, and the same outputs as timm's modules with the same weights."""
import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention as TimmWindowAttention

import semask_kernels as sk
from tests.utils import assert_close


def test_window_attention_is_state_dict_compatible_with_timm():
    timm_attn = TimmWindowAttention(48, num_heads=3, window_size=7).eval()
    ours = sk.nn.WindowAttention(48, num_heads=3, window_size=7).eval()
    assert set(ours.state_dict()) == set(timm_attn.state_dict())
    ours.load_state_dict(timm_attn.state_dict())
    assert torch.equal(ours.relative_position_index, timm_attn.relative_position_index)
    assert "relative_position_index" not in ours.state_dict()
    x = torch.randn(8, 49, 48)
    mask = torch.zeros(4, 49, 49).masked_fill(torch.rand(4, 49, 49) > 0.7, -100.0)
    assert_close(ours(x, mask), timm_attn(x, mask))


def test_shifted_window_attention_matches_a_timm_block():
    block = SwinTransformerBlock(48, input_resolution=(10, 13), num_heads=3, window_size=7, shift_size=3,
                                 always_partition=True, dynamic_mask=True).eval()
    with torch.no_grad():
        block.attn.qkv.bias.normal_()
    ours = sk.nn.ShiftedWindowAttention(48, num_heads=3, window_size=7, shift_size=3).eval()
    assert set(ours.state_dict()) == set(block.attn.state_dict())
    ours.load_state_dict(block.attn.state_dict())
    x = torch.randn(2, 10, 13, 48)
    assert_close(ours(x), block._attn(x))


def test_head_dim_override():
    timm_attn = TimmWindowAttention(48, num_heads=2, head_dim=16, window_size=(3, 4)).eval()
    ours = sk.nn.WindowAttention(48, num_heads=2, head_dim=16, window_size=(3, 4)).eval()
    ours.load_state_dict(timm_attn.state_dict())
    x = torch.randn(4, 12, 48)
    assert_close(ours(x), timm_attn(x))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="attn_drop must be 0"):
        sk.nn.WindowAttention(48, 3, attn_drop=0.1)
    with pytest.raises(ValueError, match="pad_order must be one of"):
        sk.nn.ShiftedWindowAttention(48, 3, pad_order="zigzag")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        sk.nn.SemanticAttention(48, 0)
    with pytest.raises(ValueError, match="shift_size must be < window_size"):
        sk.nn.ShiftedWindowAttention(48, 3, window_size=7, shift_size=7)(torch.randn(1, 7, 7, 48))


def test_modules_run_under_autocast():
    attn = sk.nn.ShiftedWindowAttention(48, num_heads=3, window_size=7, shift_size=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(torch.randn(1, 9, 9, 48))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert attn.relative_position_bias_table.grad.dtype == torch.float32
