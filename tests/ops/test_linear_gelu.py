"""linear_gelu: the reference against timm's Mlp (fc1 + GELU); gradcheck; the custom op under compile; bad input;
empty inputs."""
import pytest
import torch
from timm.layers import Mlp

import semask_kernels as sk
from semask_kernels.ops.linear_gelu import triton as linear_gelu_triton
from tests.utils import assert_close


def test_matches_timm_mlp_first_half():
    mlp = Mlp(24, 96).eval()
    x = torch.randn(2, 7, 24)
    expected = mlp.act(mlp.fc1(x))
    for backend in ("reference", "torch", "triton"):
        assert_close(sk.linear_gelu(x, mlp.fc1.weight, mlp.fc1.bias, backend=backend), expected)
    # the torch path is timm's own calls: the same bits
    assert torch.equal(sk.linear_gelu(x, mlp.fc1.weight, mlp.fc1.bias, backend="torch"), expected)


def test_gelu_is_exact_erf_not_tanh():
    h = torch.linspace(-4, 4, 17, dtype=torch.float64)
    eye = torch.eye(17, dtype=torch.float64)
    out = sk.linear_gelu(h[None], eye, backend="reference")[0]
    assert_close(out, torch.nn.functional.gelu(h))
    assert (out - torch.nn.functional.gelu(h, approximate="tanh")).abs().max() > 1e-5


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck(backend):
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: sk.linear_gelu(x, w, b, backend=backend), (x, w, b))


def test_triton_backward_recomputes_the_exact_derivative():
    x = torch.randn(9, 20, dtype=torch.float64)
    w = torch.randn(12, 20, dtype=torch.float64) * 0.3
    b = torch.randn(12, dtype=torch.float64)
    grad = torch.randn(9, 12, dtype=torch.float64)
    h = x @ w.t() + b
    deriv = 0.5 * (1 + torch.erf(h / 2 ** 0.5)) + h * torch.exp(-h * h / 2) / (2 * torch.pi) ** 0.5
    dx, dw, db = linear_gelu_triton.backward(grad.float(), x.float(), w.float(), b.float())
    dh = grad * deriv
    assert_close(dx, (dh @ w).float())
    assert_close(dw, (dh.t() @ x).float(), scale=float((dh.t() @ x).abs().max()))
    assert_close(db, dh.sum(0).float(), scale=float(dh.sum(0).abs().max()))


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_compile_fullgraph_matches_eager(backend):
    x, w, b = torch.randn(2, 5, 16), torch.randn(32, 16) * 0.25, torch.randn(32)

    def fn(x, w, b):
        return sk.linear_gelu(x, w, b, backend=backend)

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(x, w, b), fn(x, w, b))


BAD = [
    (dict(x=torch.randn(4, 7)), ValueError, "x's last dim"),
    (dict(weight=torch.randn(8)), ValueError, "weight must have 2 dimensions"),
    (dict(bias=torch.randn(9)), ValueError, r"bias must have shape \(8,\)"),
    (dict(bias=torch.randn(8, dtype=torch.float64)), TypeError, "bias must have the same dtype as x"),
    (dict(x=torch.ones(4, 6, dtype=torch.int64)), TypeError, "x must have a floating dtype"),
    (dict(x=torch.tensor(1.0)), ValueError, "x must have at least 1 dimension"),
]


@pytest.mark.parametrize("change,error,match", BAD)
def test_bad_input_names_the_argument(change, error, match):
    kwargs = dict(x=torch.randn(4, 6), weight=torch.randn(8, 6), bias=torch.randn(8)) | change
    with pytest.raises(error, match=match):
        sk.linear_gelu(**kwargs)


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_empty_rows_give_empty_output_and_zero_weight_gradients(backend):
    x = torch.randn(0, 6, requires_grad=True)
    w, b = torch.randn(8, 6, requires_grad=True), torch.randn(8, requires_grad=True)
    out = sk.linear_gelu(x, w, b, backend=backend)
    assert out.shape == (0, 8)
    out.sum().backward()
    assert w.grad is not None and not w.grad.any() and not b.grad.any()
