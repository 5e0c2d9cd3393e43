"""linear_gelu, Triton backend: what is specific to it (tiles, reasons it declines, GPU sizes). Every case of the
spec against the reference, layouts, determinism and opcheck are in test_conformance.py."""
import pytest
import torch

from semask_kernels.kernels import linear_epilogue as le
from semask_kernels.ops.linear_gelu import triton
from semask_kernels.ops.linear_gelu.spec import SPEC, inputs
from tests.ops.conformance import check

# Swin-T's four stages at batch 8: (tokens, C); fc1 maps C to 4C
SWIN_T_STAGES = [(8 * 56 * 56, 96), (8 * 28 * 28, 192), (8 * 14 * 14, 384), (8 * 7 * 7, 768)]


def test_tiles_shrink_for_small_problems_and_stay_powers_of_two():
    big = le.config(25088, 384, 96, torch.bfloat16)
    small = le.config(5, 20, 12, torch.float32)
    assert (big.block_m, big.block_n, big.block_k) == (64, 64, 32)
    assert (small.block_m, small.block_n, small.block_k) == (16, 32, 16)
    for c in (big, small):
        assert all(v & (v - 1) == 0 for v in (c.block_m, c.block_n, c.block_k))


def test_declines_float64_and_other_devices_with_reasons():
    x, w = torch.randn(4, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    assert "float64" in triton.supports(x, w, None)
    assert "meta" in triton.supports(x.to("meta"), w.to("meta"), None)


def test_an_epilogue_that_reads_aux_needs_it():
    x, w = torch.randn(4, 8), torch.randn(6, 8)
    with pytest.raises(ValueError, match="reads aux"):
        le.linear_epilogue(x, w, None, "gelu_grad", torch.empty(4, 6))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("tokens,c", SWIN_T_STAGES)
def test_gpu_swin_t_fc1(tokens, c, dtype):
    check(SPEC, "triton", inputs((tokens,), c, 4 * c, device="cuda"), dtype)
