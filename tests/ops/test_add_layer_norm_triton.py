"""add_layer_norm, Triton backend: what is specific to it (row blocks, the channel limit, GPU sizes). Every case of
the spec against the reference, layouts, determinism and opcheck are in test_conformance.py."""
import pytest
import torch

from semask_kernels.ops.add_layer_norm import triton
from semask_kernels.ops.add_layer_norm.spec import SPEC, inputs
from tests.ops.conformance import check

SWIN_T_STAGES = [(8 * 56 * 56, 96), (8 * 28 * 28, 192), (8 * 14 * 14, 384), (8 * 7 * 7, 768)]


def test_row_blocks_hold_whole_rows_of_about_4096_elements():
    for c in (20, 96, 384, 768, 4096):
        rows, block_c, _ = triton._blocks(c)
        assert block_c >= c and block_c & (block_c - 1) == 0
        assert rows * block_c <= 4096 or rows == 1


def test_declines_too_many_channels_and_float64_with_reasons():
    x = torch.randn(2, triton.MAX_CHANNELS + 1)
    assert f"C={triton.MAX_CHANNELS + 1}" in triton.supports(x, x, x[0], None, 1e-5)
    x = torch.randn(2, 8, dtype=torch.float64)
    assert "float64" in triton.supports(x, x, x[0], None, 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("tokens,c", SWIN_T_STAGES)
def test_gpu_swin_t_norm2(tokens, c, dtype):
    check(SPEC, "triton", inputs((tokens,), c, device="cuda"), dtype)
