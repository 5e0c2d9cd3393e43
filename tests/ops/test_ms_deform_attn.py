"""ms_deform_attn: the reference against an independent implementation (Hugging Face transformers' pure-PyTorch
function), gradcheck in float64, opcheck, torch.compile, the torch path, bad inputs and empty inputs."""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.ms_deform_attn import reference
from tests.utils import assert_close

OP = "ms_deform_attn"

# Level sizes: Mask2Former-like halves, odd sizes, a 1×1 level, one level, five levels.
SHAPES = {
    "halves": [(8, 8), (4, 4), (2, 2)],
    "odd": [(7, 5), (3, 4), (1, 3)],
    "1x1": [(5, 6), (1, 1)],
    "one-level": [(9, 7)],
    "five-levels": [(6, 5), (4, 3), (3, 2), (2, 1), (1, 1)],
}


def make(b, lq, heads, d, shapes, points, *, dtype=torch.float32, device="cpu", margin=0.15, seed=0):
    """value (B, S, nH, d), spatial_shapes, level_start_index, sampling_locations (some outside [0, 1] by up
    to ``margin``), attention_weights (unit-scale, not normalized) and an output gradient."""
    gen = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(b, s, heads, d, generator=gen)
    loc = torch.rand(b, lq, heads, levels, points, 2, generator=gen) * (1 + 2 * margin) - margin
    weights = torch.rand(b, lq, heads, levels, points, generator=gen)
    grad = torch.randn(b, lq, heads * d, generator=gen)
    spatial = torch.tensor(shapes, dtype=torch.int64)
    start = torch.tensor([0] + [h * w for h, w in shapes[:-1]], dtype=torch.int64).cumsum(0)
    to = dict(dtype=dtype, device=device)
    return (value.to(**to), spatial.to(device), start.to(device), loc.to(**to), weights.to(**to)), grad.to(**to)


def run(backend, inputs, grad, dtype=None):
    """(out, d value, d sampling_locations, d attention_weights) of the public op."""
    value, spatial, start, loc, weights = inputs
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (value, loc, weights)]
    out = sk.ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], backend=backend)
    return [out, *torch.autograd.grad(out, leaves, grad.to(out.dtype))]


@pytest.mark.parametrize("case", list(SHAPES))
def test_reference_matches_transformers(case):
    """HF transformers' multi_scale_deformable_attention (Mask2Former) is written independently of ours."""
    hf = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    (value, spatial, start, loc, weights), grad = make(2, 11, 3, 5, SHAPES[case], 3, dtype=torch.float64)
    expected = hf.multi_scale_deformable_attention(value, SHAPES[case], loc, weights)
    got = sk.ms_deform_attn(value, spatial, start, loc, weights, backend="reference")
    assert got.shape == (2, 11, 15) and got.dtype == torch.float64
    assert_close(got, expected, name="out")
    assert float(got.abs().max()) > 0.1  # the case samples real values, not only padding


def test_reference_by_hand_at_pixel_centres_and_outside():
    """One head, one level, one point: at a pixel centre the sample is that pixel; halfway between two centres
    it is their mean; beyond the map's edge by half a pixel it is half the edge pixel (zeros padding)."""
    h, w = 3, 4
    value = torch.arange(h * w, dtype=torch.float64).view(1, h * w, 1, 1) + 1
    cases = [((2.5 / w, 1.5 / h), 7.0), ((2.0 / w, 0.5 / h), 2.5), ((4.0 / w, 0.5 / h), 2.0),
             ((0.5 / w, 0.0), 0.5), ((1.5, 0.5), 0.0)]
    loc = torch.tensor([xy for xy, _ in cases], dtype=torch.float64).view(1, len(cases), 1, 1, 1, 2)
    weights = torch.full((1, len(cases), 1, 1, 1), 2.0, dtype=torch.float64)
    out = sk.ms_deform_attn(value, [(h, w)], [0], loc, weights, backend="reference")
    assert out.flatten().tolist() == pytest.approx([2 * v for _, v in cases])


def test_align_corners_and_padding_modes_follow_grid_sample():
    (value, spatial, start, loc, weights), _ = make(1, 6, 2, 3, [(5, 4)], 2, dtype=torch.float64, margin=0.4)
    image = value[0].permute(1, 2, 0).reshape(2, 3, 5, 4)
    for align_corners in (False, True):
        for mode in ("zeros", "border", "reflection"):
            out = sk.ms_deform_attn(value, spatial, start, loc, weights, align_corners=align_corners,
                                    padding_mode=mode, backend="reference")
            grid = (2 * loc[0, :, :, 0] - 1).transpose(0, 1)  # (nH, Lq, nP, 2)
            sampled = torch.nn.functional.grid_sample(image, grid, padding_mode=mode, align_corners=align_corners)
            expected = (sampled * weights[0, :, :, 0].transpose(0, 1)[:, None]).sum(-1)  # (nH, d, Lq)
            assert_close(out[0], expected.permute(2, 0, 1).reshape(6, 6), name=f"{mode} {align_corners}")


@pytest.mark.parametrize("case", ["odd", "five-levels"])
def test_gradcheck_float64(case):
    (value, spatial, start, loc, weights), _ = make(1, 4, 2, 3, SHAPES[case], 2, dtype=torch.float64)
    # random locations almost surely miss the kinks of bilinear sampling (integer pixel coordinates)
    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    for backend in ("reference", "torch"):
        assert torch.autograd.gradcheck(
            lambda v, s, a: sk.ms_deform_attn(v, spatial, start, s, a, backend=backend), leaves, eps=1e-6,
            atol=1e-5)


def test_opcheck_reference():
    (value, spatial, start, loc, weights), _ = make(2, 5, 2, 3, SHAPES["odd"], 2)
    args = (value.requires_grad_(), spatial, start, loc.requires_grad_(), weights.requires_grad_(), False, "zeros",
            "reference")
    torch.library.opcheck(torch.ops.semask_kernels.ms_deform_attn, args)


def test_torch_path_matches_reference_and_auto_picks_it():
    inputs, grad = make(2, 7, 2, 4, SHAPES["odd"], 3)
    assert backends.choose_backend(OP, "auto", *inputs, False, "zeros") == "torch"
    for a, e in zip(run("torch", inputs, grad), run("reference", inputs, grad)):
        assert_close(a, e)


def test_compile_fullgraph_has_no_graph_break():
    inputs, grad = make(2, 7, 2, 4, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = inputs

    def f(v, s, a):
        return sk.ms_deform_attn(v, spatial, start, s, a) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out, leaves, grad)
    expected = run("reference", inputs, grad)
    assert_close(out, 2 * expected[0], name="out")
    for g, e in zip(grads, expected[1:]):
        assert_close(g, 2 * e)


def test_flop_counter_counts_forward_and_backward():
    from torch.utils.flop_counter import FlopCounterMode
    inputs, grad = make(2, 7, 2, 4, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    with FlopCounterMode(display=False) as counter:
        out = sk.ms_deform_attn(value, spatial, start, loc, weights, backend="reference")
        out.backward(grad)
    samples_channels = 2 * 7 * 2 * 3 * 3 * 4  # B·Lq·nH·nL·nP·d
    assert counter.get_total_flops() == (10 + 30) * samples_channels


def test_level_table_as_lists_or_int32():
    inputs, _ = make(2, 7, 2, 4, SHAPES["odd"], 3)
    value, spatial, start, loc, weights = inputs
    expected = sk.ms_deform_attn(*inputs, backend="reference")
    for table in ((SHAPES["odd"], start.tolist()), (spatial.int(), start.int())):
        assert torch.equal(sk.ms_deform_attn(value, *table, loc, weights, backend="reference"), expected)


def test_empty_inputs_give_zero_gradients():
    (value, spatial, start, loc, weights), _ = make(2, 0, 2, 4, SHAPES["odd"], 3)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    out = sk.ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2])
    assert out.shape == (2, 0, 8)
    out.sum().backward()
    assert all(t.grad is not None and not t.grad.any() for t in leaves)


def _bad(**changes):
    inputs, _ = make(2, 5, 2, 3, SHAPES["odd"], 2)
    args = dict(zip(("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"),
                    inputs))
    args.update(changes)
    return args


@pytest.mark.parametrize("changes, error, match", [
    (lambda a: {"value": a["value"][0]}, ValueError, r"value must have 4 dimensions"),
    (lambda a: {"sampling_locations": a["sampling_locations"][..., 0]}, ValueError,
     r"sampling_locations must have 6 dimensions"),
    (lambda a: {"attention_weights": a["attention_weights"][..., :1]}, ValueError,
     r"attention_weights must have shape \(2, 5, 2, 3, 2\)"),
    (lambda a: {"sampling_locations": a["sampling_locations"][:, :, :1]}, ValueError,
     r"sampling_locations must be \(B, Lq, nH, nL, nP, 2\) with B = 2 and nH = 2"),
    (lambda a: {"value": a["value"].long()}, TypeError, r"value must have a floating dtype"),
    (lambda a: {"attention_weights": a["attention_weights"].double()}, TypeError,
     r"attention_weights must have the same dtype as value"),
    (lambda a: {"sampling_locations": a["sampling_locations"].to("meta")}, ValueError,
     r"sampling_locations must be on the same device as value"),
    (lambda a: {"spatial_shapes": a["spatial_shapes"].float()}, TypeError, r"spatial_shapes must have an integer"),
    (lambda a: {"spatial_shapes": a["spatial_shapes"].to("meta")}, ValueError,
     r"spatial_shapes must be on the same device as value"),
    (lambda a: {"spatial_shapes": a["spatial_shapes"][:2]}, ValueError, r"spatial_shapes must have shape \(3, 2\)"),
    (lambda a: {"level_start_index": a["level_start_index"][None]}, ValueError,
     r"level_start_index must have shape \(3,\)"),
    (lambda a: {"spatial_shapes": "7x5"}, TypeError, r"spatial_shapes must be an integer tensor"),
    (lambda a: {"spatial_shapes": torch.tensor([[7, 5], [3, 4], [1, 4]])}, ValueError,
     r"spatial_shapes \[\(7, 5\), \(3, 4\), \(1, 4\)\] cover Σ H·W = 51 tokens, but value has S = 50"),
    (lambda a: {"spatial_shapes": torch.tensor([[7, 5], [3, 4], [0, 3]])}, ValueError,
     r"spatial_shapes must hold \(H, W\) >= 1"),
    (lambda a: {"level_start_index": torch.tensor([0, 35, 48])}, ValueError,
     r"level_start_index must be the start of each level in value's dim 1, \[0, 35, 47\]"),
])
@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_bad_inputs_raise_errors_naming_the_argument(changes, error, match, backend):
    args = _bad()
    args.update(changes(args))
    with pytest.raises(error, match=match):
        sk.ms_deform_attn(*args.values(), backend=backend)


def test_bad_options_raise():
    args = _bad()
    with pytest.raises(ValueError, match=r"padding_mode must be one of .* got 'wrap'"):
        sk.ms_deform_attn(*args.values(), padding_mode="wrap")
    with pytest.raises(TypeError, match="align_corners must be a bool"):
        sk.ms_deform_attn(*args.values(), align_corners=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        sk.ms_deform_attn(*args.values(), backend="fastest")
