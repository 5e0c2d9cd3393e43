"""SeMask-Mask2Former FaPN / MSFaPN: the DCNv2 layer against a grid_sample re-statement of DCNv2, feature alignment
at init, the shared GroupNorm of the official decoders, the official key layouts and parameter counts (README 227M
/ 224M), an official-layout .pkl loading completely, and a training step."""
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

import semask_models as sm
from semask_models.detectron2_checkpoint import load_detectron2_checkpoint
from semask_models.heads.fapn import FeatureAlign, ModulatedDeformConv, PixelFANDecoder
from tests.models.test_detectron2_checkpoint import (
    _synthetic_arrays,
    official_mask2former_head_keys,
    official_swin_keys,
)
from tests.utils import assert_close


def dcn_v2_reference(x, offset, mask, weight, bias, padding, groups):
    """DCNv2 from its definition: out = Σ_taps w_k · m_k · x(p + p_k + Δp_k), bilinear, zero outside; offset channels
    per deformable group g and tap k = (i, j): [g·2K + 2k] = Δy, [g·2K + 2k + 1] = Δx; mask channel g·K + k; the
    input channels split into ``groups`` contiguous blocks."""
    B, C, H, W = x.shape
    kh, kw = weight.shape[-2:]
    K = kh * kw
    cols = []
    ys, xs = torch.meshgrid(torch.arange(H, dtype=x.dtype), torch.arange(W, dtype=x.dtype), indexing="ij")
    per = C // groups
    for g in range(groups):
        xg = x[:, g * per:(g + 1) * per]
        for k in range(K):
            i, j = divmod(k, kw)
            py = ys - padding + i + offset[:, g * 2 * K + 2 * k]
            px = xs - padding + j + offset[:, g * 2 * K + 2 * k + 1]
            grid = torch.stack((2 * (px + 0.5) / W - 1, 2 * (py + 0.5) / H - 1), dim=-1)  # align_corners=False
            sampled = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            cols.append((g, k, sampled * mask[:, g * K + k: g * K + k + 1]))
    out = bias.view(1, -1, 1, 1).expand(B, -1, H, W).clone()
    for g, k, col in cols:
        i, j = divmod(k, kw)
        out = out + torch.einsum("oc,bchw->bohw", weight[:, g * per:(g + 1) * per, i, j], col)
    return out


def test_modulated_deform_conv_matches_dcn_v2():
    torch.manual_seed(0)
    layer = ModulatedDeformConv(16, 12, deformable_groups=4).double()
    with torch.no_grad():
        layer.conv_offset_mask.weight.normal_(0, 0.3)
        layer.conv_offset_mask.bias.normal_(0, 0.5)
        layer.bias.normal_()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    offset_input = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    ours = layer(x, offset_input)
    o1, o2, m = torch.chunk(layer.conv_offset_mask(offset_input), 3, dim=1)
    ref = dcn_v2_reference(x, torch.cat((o1, o2), 1), m.sigmoid(), layer.weight, layer.bias, 1, 4)
    assert_close(ours, ref, torch.float64, "DCNv2")


def test_feature_align_at_init_is_half_a_convolution():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(32, 32)
    align = FeatureAlign(32, norm).eval()
    feat_l, feat_s = torch.randn(2, 32, 10, 12), torch.randn(2, 32, 5, 6)
    up = F.interpolate(feat_s, size=(10, 12), mode="bilinear", align_corners=False)
    # zero-initialized offsets and masks: no shift, modulation sigmoid(0) = 0.5
    expected = F.relu(0.5 * F.conv2d(up, align.dcpack_L2.weight, padding=1) + align.dcpack_L2.bias.view(1, -1, 1, 1))
    assert_close(align(feat_l, feat_s), expected + feat_l, torch.float32, "aligned")


def test_decoders_share_the_level_norm_as_officially():
    pd = PixelFANDecoder([32, 64, 96, 128], conv_dim=32, mask_dim=32)
    assert pd.align_1.offset.norm is pd.layer_1.norm and pd.align_3.offset.norm is pd.layer_3.norm
    keys = set(pd.state_dict())
    assert {"align_1.offset.norm.weight", "layer_1.norm.weight"} <= keys
    assert not hasattr(pd, "align_4")


def official_fapn_pixel_decoder_keys(in_channels, conv_dim=256, mask_dim=256, groups=8):
    """(name, shape) of the official ``PixelFANDecoder`` (GN; the offset conv's norm is the output conv's)."""
    pd = "sem_seg_head.pixel_decoder."
    keys = []
    for idx, c in enumerate(in_channels):
        n = idx + 1
        if idx < len(in_channels) - 1:
            keys += [(f"{pd}adapter_{n}.weight", (conv_dim, c, 1, 1)), (f"{pd}adapter_{n}.norm.weight", (conv_dim,)),
                     (f"{pd}adapter_{n}.norm.bias", (conv_dim,))]
            keys += _align_keys(f"{pd}align_{n}.", conv_dim, groups)
            keys += [(f"{pd}layer_{n}.weight", (conv_dim, conv_dim, 3, 3))]
        else:
            keys += [(f"{pd}layer_{n}.weight", (conv_dim, c, 3, 3))]
        keys += [(f"{pd}layer_{n}.norm.weight", (conv_dim,)), (f"{pd}layer_{n}.norm.bias", (conv_dim,))]
    keys += [(pd + "mask_features.weight", (mask_dim, conv_dim, 3, 3)), (pd + "mask_features.bias", (mask_dim,))]
    return keys


def _align_keys(a, c, groups):
    return [(a + "offset.weight", (c, 2 * c, 1, 1)), (a + "offset.norm.weight", (c,)), (a + "offset.norm.bias", (c,)),
            (a + "dcpack_L2.weight", (c, c, 3, 3)), (a + "dcpack_L2.bias", (c,)),
            (a + "dcpack_L2.conv_offset_mask.weight", (groups * 27, c, 3, 3)),
            (a + "dcpack_L2.conv_offset_mask.bias", (groups * 27,))]


def official_head_keys(kind, in_channels, k, conv_dim=256, mask_dim=256, **kw):
    m2f = official_mask2former_head_keys(in_channels, k, conv_dim=conv_dim, mask_dim=mask_dim, **kw)
    if kind == "msfapn":  # the deformable decoder plus align_1 (its norm shared with layer_1)
        return m2f + _align_keys("sem_seg_head.pixel_decoder.align_1.", conv_dim, 8)
    predictor = [(n, s) for n, s in m2f if not n.startswith("sem_seg_head.pixel_decoder.")]
    return official_fapn_pixel_decoder_keys(in_channels, conv_dim, mask_dim) + predictor


def _count(keys):
    """Parameters of a key list: buffers left out, and a shared norm counted once (its offset.norm alias)."""
    return sum(math.prod(s) for n, s in keys if not n.endswith("relative_position_index")
               and n != "criterion.empty_weight" and ".offset.norm." not in n)


# Counted: SeMask-L Mask2Former FaPN 226,745,479 and MSFaPN 223,851,415 (K = 150), the README's 227M and 224M.
@pytest.mark.parametrize("kind,readme_m", [("fapn", 227), ("msfapn", 224)])
def test_official_layout_and_parameter_count(kind, readme_m):
    official = dict(official_swin_keys(192, (2, 2, 18, 2), 12, num_classes=150)
                    + official_head_keys(kind, [192, 384, 768, 1536], 150))
    with torch.device("meta"):
        model = sm.build_model(f"semask_swin_l_mask2former_{kind}", num_classes=150)
    ours = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    rebuilt = {n for n in official if n.endswith("relative_position_index") or n == "criterion.empty_weight"}
    assert sorted(set(ours) ^ (set(official) - rebuilt)) == []
    assert [n for n in ours if ours[n] != official[n]] == []
    params = sum(p.numel() for p in model.parameters())
    assert params == _count(official.items())
    assert round(params / 1e6) == readme_m
    assert [layer.semantic_layer.window_size for layer in model.backbone.layers] == [12, 12, None, None]


TINY = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4, head_channels=32, mask_dim=32,
            hidden_dim=32, num_queries=5, nheads=2, dim_feedforward=64, dec_layers=3, enc_layers=1, num_points=200,
            drop_path_rate=0.0)


@pytest.mark.parametrize("kind", ["fapn", "msfapn"])
def test_official_pkl_loads_completely(tmp_path, kind):
    keys = (official_swin_keys(32, TINY["depths"], 4, 5)
            + official_head_keys(kind, [32, 64, 128, 256], 5, conv_dim=32, mask_dim=32, hidden=32, queries=5,
                                 ffn=64, dec_layers=3, enc_layers=1))
    arrays = _synthetic_arrays(keys, seed=4)
    for name in list(arrays):  # one shared module under two names: equal values in a real file
        if ".offset.norm." in name:
            layer = name.replace("align_", "layer_").replace(".offset.norm.", ".norm.")
            arrays[name] = arrays[layer]
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(pickle.dumps({"model": arrays}))
    torch.manual_seed(0)
    model = sm.build_model(f"semask_swin_t_mask2former_{kind}", num_classes=5, **TINY)
    report = load_detectron2_checkpoint(model, path)
    assert report.complete, str(report)
    sd = model.state_dict()
    assert all(torch.equal(sd[n], torch.from_numpy(v)) for n, v in arrays.items() if n in sd)


@pytest.mark.parametrize("kind", ["fapn", "msfapn"])
def test_training_step_and_inference(kind):
    torch.manual_seed(0)
    model = sm.build_model(f"semask_swin_t_mask2former_{kind}", num_classes=5, **TINY).train()
    img = torch.randn(2, 3, 48, 72)
    target = torch.randint(0, 5, (2, 48, 72))
    losses = model(img, target)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_cate", "loss_ce_1", "loss_cate_1"} <= set(losses)
    losses["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    # zero-initialized offset convs still get gradients; nothing is left out of the graph
    assert no_grad == []
    model.eval()
    with torch.no_grad():
        assert model(img).shape == (2, 5, 48, 72)


def test_deform_conv_flops_are_counted():
    """benchmarks.flops registers torchvision's deform_conv2d with the flop counter (it would count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    import benchmarks.flops  # noqa: F401  (registers the formula)
    layer = ModulatedDeformConv(16, 12, deformable_groups=4)
    x = torch.randn(2, 16, 7, 9)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer(x, x)
    offset_conv = 2 * 2 * (4 * 27) * 7 * 9 * 16 * 9
    assert counter.get_total_flops() == offset_conv + 2 * 2 * 12 * 7 * 9 * 16 * 9
