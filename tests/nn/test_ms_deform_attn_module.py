"""sk.nn.MSDeformAttn: Deformable DETR's / Mask2Former's module, state-dict compatible with Hugging Face
transformers' Mask2Former pixel-decoder attention (same names, shapes, initialisation and outputs)."""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from tests.utils import assert_close

SHAPES = [(8, 6), (4, 3), (2, 2)]
START = [0, 48, 60]


def _hf():
    return pytest.importorskip("transformers.models.mask2former.modeling_mask2former")


def _inputs(b=2, lq=9, d_model=48, levels=3, dtype=torch.float32):
    s = sum(h * w for h, w in SHAPES[:levels])
    query = torch.randn(b, lq, d_model, dtype=dtype)
    flat = torch.randn(b, s, d_model, dtype=dtype)
    ref = torch.rand(b, lq, levels, 2, dtype=dtype)
    return query, ref, flat, torch.tensor(SHAPES[:levels]), torch.tensor(START[:levels])


def _randomize(module):
    """Non-trivial parameters (the initialisation zeroes the offsets' weights and the attention logits)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return module


def test_parameters_have_mask2former_names_and_shapes():
    m = sk.nn.MSDeformAttn(d_model=256, n_levels=4, n_heads=8, n_points=4)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"sampling_offsets.weight": (256, 256), "sampling_offsets.bias": (256,),
                      "attention_weights.weight": (128, 256), "attention_weights.bias": (128,),
                      "value_proj.weight": (256, 256), "value_proj.bias": (256,),
                      "output_proj.weight": (256, 256), "output_proj.bias": (256,)}


def test_initialisation_matches_transformers():
    hf = _hf()
    config = hf.Mask2FormerConfig(feature_size=48, num_attention_heads=6)
    theirs = hf.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention(48, 6, n_levels=3, n_points=4)
    hf.Mask2FormerPreTrainedModel(config)._init_weights(theirs)
    ours = sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4)
    for name, p in ours.state_dict().items():
        q = theirs.state_dict()[name]
        if name.endswith("proj.weight"):  # Xavier-uniform: same bound, not the same draw
            bound = (6 / (48 + 48)) ** 0.5
            assert p.abs().max() <= bound and q.abs().max() <= bound and p.std() > bound / 3
        else:
            assert torch.equal(p, q), name
    # the k-th point of head h starts k steps along direction h (ring of 6 directions)
    bias = ours.sampling_offsets.bias.view(6, 3, 4, 2)
    assert torch.equal(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.equal(bias[0, 0, :, 1], torch.zeros(4))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_outputs_match_transformers_after_loading_its_state_dict(backend):
    hf = _hf()
    theirs = _randomize(hf.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention(48, 6, n_levels=3,
                                                                                       n_points=4)).double()
    ours = sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4, backend=backend).double()
    ours.load_state_dict(theirs.state_dict())
    query, ref, flat, shapes, start = _inputs(dtype=torch.float64)
    mask = torch.zeros(flat.shape[:2], dtype=torch.bool)
    mask[1, -7:] = True
    for ref_points in (ref, torch.cat([ref, torch.rand_like(ref) * 0.5], -1)):  # points, then boxes
        expected, _ = theirs(query, attention_mask=mask, encoder_hidden_states=flat, reference_points=ref_points,
                             spatial_shapes_list=SHAPES, level_start_index=start)
        got = ours(query, ref_points, flat, shapes, start, mask)
        assert_close(got, expected, name=f"reference points {ref_points.shape[-1]}")
    # and back: their module loads ours
    theirs.load_state_dict(ours.state_dict())


def test_padding_mask_removes_the_padded_tokens():
    m = _randomize(sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4))
    query, ref, flat, shapes, start = _inputs()
    mask = torch.zeros(flat.shape[:2], dtype=torch.bool)
    mask[:, 50:] = True
    changed = flat.clone()
    changed[:, 50:] += 100.0
    assert torch.equal(m(query, ref, flat, shapes, start, mask), m(query, ref, changed, shapes, start, mask))
    assert not torch.allclose(m(query, ref, flat, shapes, start), m(query, ref, changed, shapes, start))


def test_gradients_reach_every_parameter():
    m = _randomize(sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4))
    query, ref, flat, shapes, start = _inputs()
    m(query, ref, flat, shapes, start).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_autocast_runs_the_op_in_float32_like_the_original():
    m = _randomize(sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4))
    query, ref, flat, shapes, start = _inputs()
    expected = m(query, ref, flat, shapes, start)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(query, ref, flat, shapes, start)
    assert got.dtype == torch.bfloat16
    assert_close(got.float(), expected, dtype=torch.bfloat16, name="autocast bf16", scale=2.0)


def test_bad_arguments_raise_errors_naming_them():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads"):
        sk.nn.MSDeformAttn(d_model=50, n_heads=8)
    with pytest.raises(ValueError, match="backend must be one of"):
        sk.nn.MSDeformAttn(backend="fast")
    m = sk.nn.MSDeformAttn(d_model=48, n_levels=3, n_heads=6, n_points=4)
    query, ref, flat, shapes, start = _inputs()
    with pytest.raises(ValueError, match=r"reference_points must be \(B, Lq, n_levels, 2\)"):
        m(query, ref[..., :1], flat, shapes, start)
    with pytest.raises(ValueError, match="query and input_flatten must have d_model = 48"):
        m(query[..., :40], ref, flat, shapes, start)
    with pytest.raises(ValueError, match=r"input_spatial_shapes must be \(n_levels, 2\)"):
        m(query, ref, flat, shapes[:2], start)
    with pytest.raises(ValueError, match="input_padding_mask must have shape"):
        m(query, ref, flat, shapes, start, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="spatial_shapes .* cover"):
        m(query, ref, flat[:, :-1], shapes, start)
