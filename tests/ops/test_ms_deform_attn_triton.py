"""The Triton backend of ms_deform_attn against the reference (run in float32), forward and every gradient.

On the CPU the kernels run under the Triton interpreter (tests/conftest.py) on awkward shapes: odd level sizes,
1×1 levels, points outside the maps, nP and d not powers of two, Lq not a multiple of the query block. Tests
marked ``gpu`` repeat the checks at Mask2Former's pixel-decoder shapes on CUDA.
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.ms_deform_attn import triton as msda_triton
from tests.ops.test_ms_deform_attn import SHAPES, make, run
from tests.utils import assert_close, assert_error_within

OP = "ms_deform_attn"

# (B, Lq, nH, d, level shapes, nP): d=100 makes BLOCK_Q 16, so Lq=37 spans three query blocks with a tail.
CASES = {
    "odd-d5-p3": (2, 11, 3, 5, SHAPES["odd"], 3),
    "halves-d16-p4": (1, 9, 2, 16, SHAPES["halves"], 4),
    "1x1-level-d7-p1": (2, 6, 1, 7, SHAPES["1x1"], 1),
    "one-level-d8-p5": (1, 13, 2, 8, SHAPES["one-level"], 5),
    "five-levels-d3-p2": (1, 7, 2, 3, SHAPES["five-levels"], 2),
    "d100-lq37-blocks": (1, 37, 2, 100, SHAPES["odd"], 2),
}


def _check_fp32(got, expected):
    for name, a, e in zip(("out", "d value", "d sampling_locations", "d attention_weights"), got, expected):
        assert a.dtype == torch.float32 and a.shape == e.shape
        # d sampling_locations carries the map size (pixels per unit) and sums over d: scale the bound
        assert_close(a, e, name=name, scale=max(1.0, float(e.detach().abs().max())))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_fp32_matches_reference(case, align_corners):
    inputs, grad = make(*CASES[case])
    value, spatial, start, loc, weights = inputs

    def both(backend):
        leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
        out = sk.ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], align_corners=align_corners,
                                backend=backend)
        return [out, *torch.autograd.grad(out, leaves, grad)]

    _check_fp32(both("triton"), both("reference"))


def test_points_far_outside_and_on_the_edges():
    """Locations far outside (±1e4), exactly on the edges (0, 1) and on pixel centres: zero contributions outside,
    the same taps as grid_sample on the edges."""
    inputs, grad = make(2, 12, 2, 6, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = inputs
    loc = loc.clone()
    loc[:, 0] = 1e4
    loc[:, 1] = -1e4
    loc[:, 2, :, :, :, 0] = 0.0
    loc[:, 3, :, :, :, 1] = 1.0
    loc[:, 4] = 0.5
    _check_fp32(run("triton", (value, spatial, start, loc, weights), grad),
                run("reference", (value, spatial, start, loc, weights), grad))
    out = sk.ms_deform_attn(value, spatial, start, loc, weights, backend="triton")
    assert not out[:, :2].any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_error_within_reference_error(dtype):
    inputs, grad = make(2, 11, 3, 5, SHAPES["odd"], 3)
    inputs = [t.to(dtype).float() if t.is_floating_point() else t for t in inputs]  # representable in dtype
    exact = run("reference", inputs, grad)
    got = run("triton", inputs, grad, dtype)
    low = run("reference", inputs, grad, dtype)
    for i, (a, r, e) in enumerate(zip(got, low, exact)):
        assert a.dtype == dtype
        assert_error_within(a, r, e, 2.0 if i == 0 else 3.0, name=f"result {i}")


def _crowded(dtype=torch.float32):
    """Many corners on the same value rows: locations snapped to a 3×3 lattice, so each row's gradient sums
    dozens of contributions (the order of that sum is what determinism is about)."""
    inputs, grad = make(2, 40, 2, 6, SHAPES["odd"], 4)
    value, spatial, start, loc, weights = inputs
    loc = (loc.clamp(0, 1) * 2).round() / 2 * 0.9 + 0.05
    return [t.to(dtype) if t.is_floating_point() else t for t in (value, spatial, start, loc, weights)], grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gradients_are_bitwise_repeatable(dtype):
    inputs, grad = _crowded(dtype)
    first = run("triton", inputs, grad)
    second = run("triton", inputs, grad)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    if dtype == torch.float32:
        _check_fp32(first, run("reference", inputs, grad))


def test_value_gradient_in_batch_chunks_gives_the_same_bits(monkeypatch):
    """The sort of the value gradient runs over chunks of the batch (to bound its memory): one batch element per
    chunk gives the same bits as the whole batch at once."""
    inputs, grad = _crowded()
    inputs[0] = torch.cat([inputs[0]] * 2)[:3]  # B = 3: chunks of 1, 1, 1
    value, spatial, start, loc, weights = inputs
    loc, weights, grad = (torch.cat([t] * 2)[:3] for t in (loc, weights, grad))
    args = (value, spatial, start, loc, weights, False, "zeros")
    whole = msda_triton.backward(grad, *args)
    monkeypatch.setattr(msda_triton, "CORNERS_PER_CHUNK", 1)
    for a, b in zip(msda_triton.backward(grad, *args), whole):
        assert torch.equal(a, b)


def test_non_contiguous_inputs_give_the_same_bits():
    inputs, grad = make(2, 11, 3, 5, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = inputs
    strided = (torch.stack([value, value], -1)[..., 0], spatial.t().contiguous().t(), start,
               loc.transpose(0, 1).contiguous().transpose(0, 1), torch.stack([weights, weights], -1)[..., 1])
    assert not strided[0].is_contiguous() and not strided[3].is_contiguous()
    grad_nc = grad.transpose(0, 1).contiguous().transpose(0, 1)
    args = (False, "zeros")
    assert torch.equal(msda_triton.forward(*strided, *args), msda_triton.forward(*inputs, *args))
    for a, b in zip(msda_triton.backward(grad_nc, *strided, *args), msda_triton.backward(grad, *inputs, *args)):
        assert torch.equal(a, b)


def test_opcheck_triton():
    (value, spatial, start, loc, weights), _ = make(2, 5, 2, 3, SHAPES["odd"], 2)
    args = (value.requires_grad_(), spatial, start, loc.requires_grad_(), weights.requires_grad_(), False, "zeros",
            "triton")
    torch.library.opcheck(torch.ops.semask_kernels.ms_deform_attn, args)


def test_compile_fullgraph_triton():
    inputs, grad = make(1, 7, 2, 4, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = inputs
    compiled = torch.compile(lambda v, s, a: sk.ms_deform_attn(v, spatial, start, s, a, backend="triton"),
                             fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    out = compiled(*leaves)
    _check_fp32([out, *torch.autograd.grad(out, leaves, grad)], run("reference", inputs, grad))


def test_dispatch_on_cpu_and_what_it_declines():
    inputs, _ = make(1, 5, 2, 3, SHAPES["odd"], 2)
    assert backends.why_not(OP, "triton", *inputs, False, "zeros") is None  # runs under the interpreter, by name
    assert backends.choose_backend(OP, "auto", *inputs, False, "zeros") == "torch"  # never the interpreter
    assert "zeros only" in msda_triton.supports(*inputs, False, "border")
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run.*zeros only"):
        sk.ms_deform_attn(*inputs, padding_mode="border", backend="triton")
    doubles = [t.double() if t.is_floating_point() else t for t in inputs]
    assert "float64" in msda_triton.supports(*doubles, False, "zeros")


def test_bad_level_table_is_an_error_before_any_kernel():
    inputs, _ = make(1, 5, 2, 3, SHAPES["odd"], 2)
    value, spatial, start, loc, weights = inputs
    with pytest.raises(ValueError, match="level_start_index must be the start of each level"):
        msda_triton.forward(value, spatial, start + 1, loc, weights, False, "zeros")
    with pytest.raises(ValueError, match="spatial_shapes .* cover"):
        msda_triton.forward(value, spatial * 2, start, loc, weights, False, "zeros")


# ---------------------------------------------------------------------------------------------------------- GPU

def pixel_decoder(image: int, batch: int, device="cuda"):
    """Mask2Former's pixel decoder encoder: 3 levels at strides 8, 16, 32 of an image² input, 8 heads of d=32,
    4 points, every token a query."""
    shapes = [(image // s, image // s) for s in (8, 16, 32)]
    s = sum(h * w for h, w in shapes)
    return make(batch, s, 8, 32, shapes, 4, device=device, margin=0.05)


@pytest.mark.gpu
@pytest.mark.parametrize("image", [512, 640])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_gpu_pixel_decoder_shapes(dtype, image):
    inputs, grad = pixel_decoder(image, 2)
    inputs = [t.to(dtype).float() if t.is_floating_point() else t for t in inputs]
    exact = run("reference", inputs, grad)
    got = run("triton", inputs, grad, dtype)
    if dtype == torch.float32:
        _check_fp32(got, exact)
    else:
        low = run("reference", inputs, grad, dtype)
        for i, (a, r, e) in enumerate(zip(got, low, exact)):
            assert_error_within(a, r, e, 2.0 if i == 0 else 3.0, name=f"result {i}")
    again = run("triton", inputs, grad, dtype)
    for a, b in zip(got, again):
        assert torch.equal(a, b)
