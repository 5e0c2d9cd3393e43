"""add_layer_norm: the reference against torch's LayerNorm after the add; gradcheck; the custom op under compile;
the interpreter's bfloat16 rounding; bad input."""
import pytest
import torch

import semask_kernels as sk
from tests.utils import assert_close


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_matches_add_then_layer_norm(backend):
    norm = torch.nn.LayerNorm(24)
    with torch.no_grad():
        norm.weight.normal_(1, 0.3)
        norm.bias.normal_(0, 0.3)
    x, r = torch.randn(3, 5, 24), 3 * torch.randn(3, 5, 24) + 1
    s, y = sk.add_layer_norm(x, r, norm.weight, norm.bias, eps=norm.eps, backend=backend)
    assert torch.equal(s, x + r)
    assert_close(y, norm(x + r))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck(backend):
    x, r = (torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w, b = (torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(
        lambda x, r, w, b: sk.add_layer_norm(x, r, w, b, backend=backend), (x, r, w, b))


def test_triton_gradients_of_each_output_alone():
    x, r = (torch.randn(7, 20, requires_grad=True) for _ in range(2))
    w, b = torch.randn(20, requires_grad=True), torch.randn(20, requires_grad=True)
    for pick in (0, 1):
        got = torch.autograd.grad(sk.add_layer_norm(x, r, w, b, backend="triton")[pick].square().sum(), [x, r, w, b])
        want = torch.autograd.grad(sk.add_layer_norm(x, r, w, b, backend="reference")[pick].square().sum(),
                                   [x, r, w, b])
        for g, e in zip(got, want):
            assert_close(g, e, scale=max(1.0, float(e.abs().max())))
        assert torch.equal(got[0], got[1])  # d x = d residual


def test_interpreted_bfloat16_rounds_to_nearest_even():
    x = torch.tensor([[1.0, 1.0, -2.0, 3.0]], dtype=torch.bfloat16)
    r = torch.tensor([[2 ** -8 + 2 ** -14, 2 ** -8, 2 ** -7 + 2 ** -9, 0.0]], dtype=torch.bfloat16)
    s, _ = sk.add_layer_norm(x, r, torch.ones(4, dtype=torch.bfloat16), backend="triton")
    assert torch.equal(s, x + r)  # above the tie: up; at a tie: to even


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_compile_fullgraph_matches_eager(backend):
    x, r, w, b = torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.randn(16), torch.randn(16)

    def fn(x, r, w, b):
        s, y = sk.add_layer_norm(x, r, w, b, backend=backend)
        return s * y

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(x, r, w, b), fn(x, r, w, b))


BAD = [
    (dict(residual=torch.randn(4, 5)), ValueError, r"residual must have shape \(4, 6\)"),
    (dict(weight=torch.randn(5)), ValueError, r"weight must have shape \(6,\)"),
    (dict(bias=torch.randn(6, 1)), ValueError, "bias must have 1 dimensions"),
    (dict(residual=torch.randn(4, 6, dtype=torch.float64)), TypeError, "residual must have the same dtype as x"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(x=torch.tensor(1.0)), ValueError, "x must have at least 1 dimension"),
]


@pytest.mark.parametrize("change,error,match", BAD)
def test_bad_input_names_the_argument(change, error, match):
    kwargs = dict(x=torch.randn(4, 6), residual=torch.randn(4, 6), weight=torch.randn(6), bias=torch.randn(6),
                  eps=1e-5) | change
    with pytest.raises(error, match=match):
        sk.add_layer_norm(**kwargs)
