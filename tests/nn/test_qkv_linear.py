"""qkv_linear: three separate Linears written into one (…, 3C) tensor, equal to their concatenation, with no
concatenation (no aten::cat, three GEMMs forward) and exact gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from semask_kernels.nn.qkv_linear import qkv_linear
from tests.utils import assert_close


def _params(c_in=5, c=6, bias=True, dtype=torch.float64):
    ps = []
    for _ in range(3):
        ps.append(torch.randn(c, c_in, dtype=dtype, requires_grad=True))
        ps.append(torch.randn(c, dtype=dtype, requires_grad=True) if bias else None)
    return ps


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_and_equal_to_three_linears_and_cat(bias):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    ps = _params(bias=bias)
    assert torch.autograd.gradcheck(qkv_linear, (x, *ps))
    expected = torch.cat([F.linear(x, ps[0], ps[1]), F.linear(x, ps[2], ps[3]), F.linear(x, ps[4], ps[5])], -1)
    assert_close(qkv_linear(x, *ps), expected, name="qkv")


def test_no_concatenation_and_three_gemms():
    x, ps = torch.randn(64, 32), _params(32, 32, dtype=torch.float32)
    with profile() as prof:
        qkv_linear(x, *ps).sum().backward()
    names = [e.name for e in prof.events()]
    assert "aten::cat" not in names
    forward_gemms = [n for n in names if n in ("aten::addmm", "aten::mm")]
    assert names.count("aten::addmm") == 3 and len(forward_gemms) >= 3


def test_autocast_casts_like_linear():
    x, ps = torch.randn(4, 8), _params(8, 8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = qkv_linear(x, *ps)
        expected = F.linear(x, ps[0], ps[1])
    assert out.dtype == expected.dtype == torch.bfloat16
    assert_close(out[:, :8].float(), expected.float(), dtype=torch.bfloat16, name="q under autocast")
