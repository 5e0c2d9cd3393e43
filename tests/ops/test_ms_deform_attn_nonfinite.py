"""One NaN/inf rule for ms_deform_attn on every backend (see its docstring): a sample at a non-finite location is
dropped whatever its weight, in every padding mode (no output, zero gradients); every other sample adds
weight · tap with the tap formed first, so a weight of ±inf gives ±inf·tap and a NaN weight gives NaN.
Triton runs under the interpreter on the CPU (zeros padding only, as the backend)."""
import pytest
import torch

import semask_kernels as sk
from tests.utils import assert_close

SHAPES = [(3, 4), (2, 2)]
STARTS = [0, 12]
Q, HEADS, D, POINTS = 3, 2, 4, 2
BACKENDS = [("reference", "zeros"), ("torch", "zeros"), ("triton", "zeros"), ("reference", "border"),
            ("torch", "border"), ("reference", "reflection"), ("torch", "reflection")]
HIT = (0, 1, 1, 0, 1)  # (b, q, h, l, p): the sample made non-finite


def _inputs(positive=False):
    torch.manual_seed(0)
    value = torch.randn(1, 16, HEADS, D)
    if positive:
        value = value.abs() + 0.1
    loc = torch.rand(1, Q, HEADS, 2, POINTS, 2) * 0.8 + 0.1  # inside every map
    weights = torch.rand(1, Q, HEADS, 2, POINTS)
    return value, loc, weights


def _run(backend, padding, value, loc, weights, grads=True):
    leaves = [t.detach().clone().requires_grad_(grads) for t in (value, loc, weights)]
    out = sk.ms_deform_attn(leaves[0], SHAPES, STARTS, leaves[1], leaves[2], padding_mode=padding,
                            backend=backend)
    if not grads:
        return out.detach(), None
    g = torch.linspace(-1, 1, out.numel()).view_as(out)
    return out.detach(), torch.autograd.grad(out, leaves, g)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("weight", [0.7, float("inf"), float("nan")])
@pytest.mark.parametrize("backend, padding", BACKENDS)
def test_a_non_finite_location_drops_the_sample(backend, padding, bad, weight):
    value, loc, weights = _inputs()
    dropped = weights.clone()
    dropped[HIT] = 0.0  # the rule's result: the same call without that sample
    expected, expected_grads = _run(backend, padding, value, loc, dropped)
    loc[HIT + (0,)] = bad
    weights[HIT] = weight
    out, grads = _run(backend, padding, value, loc, weights)
    assert torch.isfinite(out).all(), f"{backend}: the dropped sample reached the output"
    assert_close(out, expected, name="out")
    for name, got, ref in zip(("d value", "d loc", "d weights"), grads, expected_grads):
        assert torch.isfinite(got).all(), f"{backend}: {name} is not finite"
        if name != "d weights":
            assert_close(got, ref, name=name, scale=10)
    assert grads[1][HIT].eq(0).all() and grads[2][HIT] == 0  # the dropped sample's own gradients
    others = torch.ones_like(weights, dtype=torch.bool)
    others[HIT] = False  # (with weight 0 the expected call still has the tap as that sample's d weight)
    assert_close(grads[2][others], expected_grads[2][others], name="d weights of the other samples")


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("backend, padding", BACKENDS)
def test_an_infinite_weight_gives_infinity_times_the_tap(backend, padding, sign):
    value, loc, weights = _inputs(positive=True)  # every tap > 0
    weights[HIT] = sign * float("inf")
    out, _ = _run(backend, padding, value, loc, weights, grads=False)
    b, q, h = HIT[:3]
    hit = out[b, q, h * D:(h + 1) * D]
    assert (hit == sign * float("inf")).all(), f"{backend}: {hit}"
    others = out.clone()
    others[b, q, h * D:(h + 1) * D] = 0
    assert torch.isfinite(others).all()


@pytest.mark.parametrize("backend, padding", BACKENDS)
def test_a_nan_weight_gives_nan_for_its_query_and_head_only(backend, padding):
    value, loc, weights = _inputs()
    weights[HIT] = float("nan")
    out, _ = _run(backend, padding, value, loc, weights, grads=False)
    b, q, h = HIT[:3]
    assert out[b, q, h * D:(h + 1) * D].isnan().all()
    others = out.clone()
    others[b, q, h * D:(h + 1) * D] = 0
    assert torch.isfinite(others).all()


def test_backends_agree_on_the_non_finite_pattern():
    """Every backend gives the same NaN / inf pattern on a mix of bad locations and weights (zeros padding)."""
    value, loc, weights = _inputs(positive=True)
    loc[0, 0, 0, 0, 0, 0] = float("nan")
    loc[0, 2, 1, 1, 1, 1] = float("inf")
    weights[0, 2, 1, 1, 1] = float("inf")  # dropped: its location is inf
    weights[0, 1, 0, 0, 1] = float("inf")
    weights[0, 0, 1, 1, 0] = float("nan")
    results = {b: _run(b, "zeros", value, loc, weights, grads=False)[0] for b in ("reference", "torch", "triton")}
    ref = results["reference"]
    for name, out in results.items():
        assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isposinf(), ref.isposinf()), name
        finite = torch.isfinite(ref)
        assert_close(out[finite], ref[finite], name=name)
