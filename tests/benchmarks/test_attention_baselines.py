"""The attention candidates of ``benchmarks ops`` compute the same function from the same inputs, and the
``timm_eager`` baseline is what timm's own Swin block does (layout work on x, then the qkv Linear)."""
import pytest
import torch

from benchmarks.attention_baselines import timm_eager
from benchmarks.ops import attention_cases
from tests.utils import assert_close

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("hw,shift", [(14, 3), (10, 3), (7, 0)])
def test_timm_eager_is_timms_block(hw, shift):
    from timm.models.swin_transformer import SwinTransformerBlock
    torch.manual_seed(0)
    block = SwinTransformerBlock(32, (hw, hw), num_heads=2, window_size=7, shift_size=shift,
                                 always_partition=True).eval()
    x = torch.randn(2, hw, hw, 32)
    attn = block.attn
    got = timm_eager(x, attn.qkv.weight, attn.qkv.bias, attn.relative_position_bias_table, attn.proj.weight,
                     attn.proj.bias, heads=2, window=(7, 7), shift=(shift, shift) if shift else (0, 0),
                     scale=attn.scale)
    with torch.no_grad():
        expected = block._attn(x)
    assert_close(got.detach(), expected)


def test_every_candidate_computes_the_same_function():
    case = next(attention_cases("tiny_64", torch.float32, torch.device("cpu"), quick=True))
    assert {"timm_eager", "sdpa", "flex", "op:torch", "op:reference"} <= set(case.candidates)
    torch.manual_seed(0)
    inputs = case.inputs()
    expected = case.candidates["timm_eager"](**inputs)
    expected.square().sum().backward()
    expected_grads = {k: t.grad.clone() for k, t in inputs.items()}
    for name, fn in case.candidates.items():
        for t in inputs.values():
            t.grad = None
        if name == "flex":  # FlexAttention's CPU path has no backward: forward only
            with torch.no_grad():
                assert_close(fn(**inputs), expected.detach(), name=name)
            continue
        out = fn(**inputs)
        assert_close(out, expected, name=name)
        out.square().sum().backward()
        for k, t in inputs.items():
            assert_close(t.grad, expected_grads[k], name=f"{name} d{k}", scale=float(expected_grads[k].abs().max()))
