"""linear_residual, Triton backend: what is specific to it (reasons it declines, the per-sample scale's rows, GPU
sizes). Every case of the spec against the reference, layouts, determinism and opcheck are in test_conformance.py."""
import pytest
import torch

import semask_kernels as sk
from semask_kernels.ops.linear_residual import triton
from semask_kernels.ops.linear_residual.spec import SPEC, inputs
from tests.ops.conformance import check

SWIN_T_STAGES = [(56 * 56, 96), (28 * 28, 192), (14 * 14, 384), (7 * 7, 768)]  # (tokens an image, C)


def test_declines_float64_and_other_devices_with_reasons():
    x, w = torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    r = torch.randn(2, 4, 6, dtype=torch.float64)
    assert "float64" in triton.supports(x, w, None, r, None)
    assert "x is on meta" in triton.supports(x.float().to("meta"), w.float().to("meta"), None,
                                             r.float().to("meta"), None)


def test_tensors_on_other_devices_than_x_are_refused_before_any_backend():
    x, w, r = torch.randn(2, 4, 8), torch.randn(6, 8), torch.randn(2, 4, 6, device="meta")
    with pytest.raises(ValueError, match="residual must be on the same device as x"):
        sk.linear_residual(x, w, residual=r, backend="triton")


def test_each_row_takes_its_own_samples_scale():
    """Rows per sample not a multiple of the tile: the scale of sample b covers exactly rows b·L .. b·L+L-1."""
    x, w, r = torch.randn(5, 13, 8), torch.randn(6, 8), torch.zeros(5, 13, 6)
    scale = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    out = sk.linear_residual(x, w, residual=r, scale=scale, backend="triton")
    expected = (x @ w.t()) * scale[:, None, None]
    torch.testing.assert_close(out, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("tokens,c", SWIN_T_STAGES)
@pytest.mark.parametrize("which", ["proj", "fc2"])
def test_gpu_swin_t(which, tokens, c, dtype):
    k = c if which == "proj" else 4 * c
    check(SPEC, "triton", inputs((8, tokens), k, c, scale=True, device="cuda"), dtype)
