"""The Triton prior_map_decode lets a non-finite input reach exactly the outputs that depend on it (issue 15,
item 11): zero weights of its interpolation bands are padding, and 0·inf must not turn every output NaN."""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from tests.utils import assert_close

SIZES = [(16, 16), (8, 8), (4, 4), (2, 2)]
# the interpreter evaluates both sides of tl.where, so numpy warns about the 0·inf it then discards
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _maps(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 2, h, w, generator=g, dtype=dtype) for h, w in SIZES]


def _dependents(level, y, x, align_corners):
    """Outputs whose value depends on maps[level][0, 0, y, x]: the support of its impulse response (bilinear
    weights are >= 0, so nothing cancels)."""
    impulse = [torch.zeros(1, 2, h, w, dtype=torch.float64) for h, w in SIZES]
    impulse[level][0, 0, y, x] = 1.0
    return sk.prior_map_decode(impulse, align_corners=align_corners, backend="reference") != 0


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("level, y, x", [(1, 3, 5), (2, 1, 2), (3, 0, 1)])
def test_one_inf_reaches_only_its_dependents(level, y, x, align_corners):
    maps = _maps()
    maps[level][0, 0, y, x] = float("inf")
    out = sk.prior_map_decode(maps, align_corners=align_corners, backend="triton")
    depends = _dependents(level, y, x, align_corners)
    assert 0 < int(depends.sum()) < depends.numel()
    bad = ~torch.isfinite(out)
    assert torch.equal(bad, depends), f"{int(bad.sum())} non-finite outputs, {int(depends.sum())} depend on the inf"
    assert bool((out[bad] == float("inf")).all())  # +inf, not NaN: every weight on it is positive
    clean = _maps()
    expected = sk.prior_map_decode(clean, align_corners=align_corners, backend="reference")
    assert_close(out[~bad], expected[~bad], name="outputs that do not depend on the inf")


@pytest.mark.parametrize("align_corners", [False, True])
def test_one_nan_in_the_gradient_reaches_only_the_maps_it_flows_to(align_corners):
    y, x = 5, 9
    impulse = torch.zeros(1, 2, *SIZES[0], dtype=torch.float64)
    impulse[0, 0, y, x] = 1.0
    leaves = [m.double().requires_grad_() for m in _maps()]
    out = sk.prior_map_decode(leaves, align_corners=align_corners, backend="reference")
    flows = [g != 0 for g in torch.autograd.grad(out, leaves, impulse)]

    leaves = [m.requires_grad_() for m in _maps()]
    out = sk.prior_map_decode(leaves, align_corners=align_corners, backend="triton")
    grad = torch.randn_like(out)
    grad[0, 0, y, x] = float("nan")
    grads = torch.autograd.grad(out, leaves, grad)
    for i, (g, f) in enumerate(zip(grads, flows)):
        assert torch.equal(g.isnan(), f), f"maps[{i}]: {int(g.isnan().sum())} NaN, {int(f.sum())} reached"
