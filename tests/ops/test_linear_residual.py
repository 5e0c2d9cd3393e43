"""linear_residual: the reference against timm's block (proj/fc2, drop path, residual); the per-sample scale;
gradcheck; the custom op under compile; bad input."""
import pytest
import torch

import semask_kernels as sk
from tests.utils import assert_close


def test_matches_timm_drop_path_residual():
    from timm.layers import DropPath
    fc = torch.nn.Linear(40, 24)
    x, shortcut = torch.randn(4, 9, 40), torch.randn(4, 9, 24)
    drop = DropPath(0.25).train()
    torch.manual_seed(3)
    expected = shortcut + drop(fc(x))
    torch.manual_seed(3)
    keep = x.new_empty(4, 1, 1).bernoulli_(0.75)  # the draw DropPath makes
    scale = keep.flatten() / 0.75
    for backend in ("reference", "torch", "triton"):
        assert_close(sk.linear_residual(x, fc.weight, fc.bias, residual=shortcut, scale=scale, backend=backend),
                     expected)
    # without drop path the torch path is timm's own calls: the same bits
    assert torch.equal(sk.linear_residual(x, fc.weight, fc.bias, residual=shortcut, backend="torch"),
                       shortcut + fc(x))


def test_a_dropped_sample_is_its_residual():
    x, w, r = torch.randn(3, 4, 8), torch.randn(5, 8), torch.randn(3, 4, 5)
    out = sk.linear_residual(x, w, residual=r, scale=torch.tensor([1.0, 0.0, 2.0]), backend="triton")
    assert torch.equal(out[1], r[1])
    assert_close(out[2], r[2] + 2 * (x[2] @ w.t()))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck(backend):
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.0, 1.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x, w, b, r: sk.linear_residual(x, w, b, residual=r, scale=s, backend=backend), (x, w, b, r))


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_compile_fullgraph_matches_eager(backend):
    x, w, b, r = torch.randn(2, 5, 16), torch.randn(8, 16), torch.randn(8), torch.randn(2, 5, 8)
    s = torch.tensor([1.25, 0.0])

    def fn(x, w, b, r, s):
        return sk.linear_residual(x, w, b, residual=r, scale=s, backend=backend)

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(x, w, b, r, s), fn(x, w, b, r, s))


BAD = [
    (dict(residual=None), ValueError, "residual is required"),
    (dict(residual=torch.randn(2, 4, 7)), ValueError, r"residual must have shape \(2, 4, 8\)"),
    (dict(scale=torch.ones(3)), ValueError, r"scale must have shape \(2,\)"),
    (dict(scale=torch.ones(2, 1)), ValueError, "scale must have 1 dimensions"),
    (dict(x=torch.randn(2, 4, 5)), ValueError, "x's last dim"),
    (dict(weight=torch.randn(8, 6, dtype=torch.float64)), TypeError, "weight must have the same dtype as x"),
]


@pytest.mark.parametrize("change,error,match", BAD)
def test_bad_input_names_the_argument(change, error, match):
    kwargs = dict(x=torch.randn(2, 4, 6), weight=torch.randn(8, 6), bias=torch.randn(8),
                  residual=torch.randn(2, 4, 8), scale=None) | change
    with pytest.raises(error, match=match):
        sk.linear_residual(**kwargs)
