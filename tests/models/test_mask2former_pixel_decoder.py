"""Mask2Former's deformable-attention pixel decoder and the whole head against HF transformers'
``Mask2FormerPixelDecoder`` (+ ``Mask2FormerTransformerModule``) with weights mapped from ours, and the official
state-dict layout."""
from __future__ import annotations

import pytest
import torch

from semask_models.heads.mask2former import Mask2FormerHead, MSDeformAttnPixelDecoder
from tests.models.test_mask2former_decoder import _hf_state_dict as _hf_decoder_state_dict
from tests.utils import assert_close

m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")

CHANNELS = [8, 16, 24, 40]
CONV, HEADS, ENC_FFN, ENC_LAYERS, K = 32, 4, 48, 2, 3  # HF fixes GroupNorm(32, ·), 3 levels and 4 points


def _hf_config():
    return m2f.Mask2FormerConfig(feature_size=CONV, mask_feature_size=CONV, hidden_dim=CONV,
                                 encoder_feedforward_dim=ENC_FFN, encoder_layers=ENC_LAYERS,
                                 num_attention_heads=HEADS, dim_feedforward=40, decoder_layers=4, num_queries=6,
                                 num_labels=K, dropout=0.0, common_stride=4, feature_strides=[4, 8, 16, 32])


def _hf_pixel_state_dict(ours: MSDeformAttnPixelDecoder) -> dict:
    sd = {"level_embed": ours.transformer.level_embed,
          "mask_projection.weight": ours.mask_features.weight, "mask_projection.bias": ours.mask_features.bias,
          "adapter_1.0.weight": ours.adapter_1.weight, "adapter_1.1.weight": ours.adapter_1.norm.weight,
          "adapter_1.1.bias": ours.adapter_1.norm.bias, "layer_1.0.weight": ours.layer_1.weight,
          "layer_1.1.weight": ours.layer_1.norm.weight, "layer_1.1.bias": ours.layer_1.norm.bias}
    for name, p in ours.input_proj.named_parameters():
        sd["input_projections." + name] = p
    rename = {"norm1": "self_attn_layer_norm", "linear1": "fc1", "linear2": "fc2", "norm2": "final_layer_norm"}
    for name, p in ours.transformer.encoder.layers.named_parameters():
        i, module, rest = name.split(".", 2)
        sd[f"encoder.layers.{i}.{rename.get(module, module)}.{rest}"] = p
    return {k: v.detach().clone() for k, v in sd.items()}


def _perturb(module: torch.nn.Module) -> None:
    """Random offsets everywhere (the deformable sampling then reaches off-grid and off-map points)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def _features(b=2, h=72, w=88, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, -(-h // s), -(-w // s), generator=g) for c, s in zip(CHANNELS, (4, 8, 16, 32))]


def test_pixel_decoder_matches_hf():
    torch.manual_seed(0)
    ours = MSDeformAttnPixelDecoder(CHANNELS, conv_dim=CONV, mask_dim=CONV, transformer_nheads=HEADS,
                                    transformer_dim_feedforward=ENC_FFN, transformer_enc_layers=ENC_LAYERS,
                                    backend="reference").eval()
    _perturb(ours)
    hf = m2f.Mask2FormerPixelDecoder(_hf_config(), feature_channels=CHANNELS).eval()
    hf.load_state_dict(_hf_pixel_state_dict(ours), strict=True)
    features = _features()  # strides of a 72×88 input: 18×22, 9×11, 5×6, 3×3 (odd, non-square)
    mask_features, multi_scale = ours(features)
    with torch.no_grad():
        ref = hf(features, return_dict=True)
    assert mask_features.shape == (2, CONV, 18, 22)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(3, 3), (5, 6), (9, 11)]
    assert_close(mask_features, ref.mask_features, name="mask_features")
    for i, (m, r) in enumerate(zip(multi_scale, ref.multi_scale_features)):
        assert_close(m, r, name=f"multi_scale_features[{i}]")


def test_head_matches_hf_pixel_decoder_plus_transformer_module():
    torch.manual_seed(0)
    ours = Mask2FormerHead(CHANNELS, K, conv_dim=CONV, mask_dim=CONV, enc_layers=ENC_LAYERS, enc_nheads=HEADS,
                           enc_dim_feedforward=ENC_FFN, hidden_dim=CONV, num_queries=6, nheads=HEADS,
                           dim_feedforward=40, dec_layers=4, backend="reference").eval()
    _perturb(ours)
    config = _hf_config()
    hf_pixel = m2f.Mask2FormerPixelDecoder(config, feature_channels=CHANNELS).eval()
    hf_pixel.load_state_dict(_hf_pixel_state_dict(ours.pixel_decoder), strict=True)
    hf_decoder = m2f.Mask2FormerTransformerModule(in_features=CONV, config=config).eval()
    hf_decoder.load_state_dict(_hf_decoder_state_dict(ours.predictor), strict=True)
    features = _features(b=1, h=64, w=96, seed=3)
    out = ours(features)
    with torch.no_grad():
        pix = hf_pixel(features, return_dict=True)
        ref = hf_decoder(list(pix.multi_scale_features), pix.mask_features)
    assert out["pred_masks"].shape == (1, 6, 16, 24) and len(out["aux_outputs"]) == 3
    assert_close(out["pred_masks"], ref.masks_queries_logits[-1], name="pred_masks")
    assert_close(out["pred_logits"], ours.predictor.class_embed(ref.intermediate_hidden_states[-1].transpose(0, 1)),
                 name="pred_logits")
    for i, aux in enumerate(out["aux_outputs"]):
        assert_close(aux["pred_masks"], ref.masks_queries_logits[i], name=f"aux {i} pred_masks")


def test_head_trains_end_to_end():
    head = Mask2FormerHead(CHANNELS, K, conv_dim=CONV, mask_dim=CONV, enc_layers=1, enc_nheads=HEADS,
                           enc_dim_feedforward=ENC_FFN, hidden_dim=CONV, num_queries=4, nheads=HEADS,
                           dim_feedforward=40, dec_layers=3)
    out = head([f.requires_grad_() for f in _features(b=2, h=32, w=32)])
    loss = sum(o["pred_masks"].square().mean() + o["pred_logits"].square().mean()
               for o in [out, *out["aux_outputs"]])
    loss.backward()
    unused = [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert unused == [], f"parameters without a finite gradient: {unused}"


def test_official_state_dict_layout():
    """Our names are the official ``sem_seg_head.*`` keys with the prefix dropped (one encoder/decoder layer
    shown per kind; the official code names the lateral/output FPN convs adapter_1/layer_1 and keeps their
    GroupNorm under ``.norm``; input_proj of the predictor is empty when conv_dim == hidden_dim)."""
    head = Mask2FormerHead([96, 192, 384, 768], 150)
    keys = set(head.state_dict())
    expected = {
        "pixel_decoder.input_proj.0.0.weight", "pixel_decoder.input_proj.2.1.bias",
        "pixel_decoder.transformer.level_embed",
        "pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight",
        "pixel_decoder.transformer.encoder.layers.0.self_attn.attention_weights.bias",
        "pixel_decoder.transformer.encoder.layers.0.self_attn.value_proj.weight",
        "pixel_decoder.transformer.encoder.layers.0.self_attn.output_proj.bias",
        "pixel_decoder.transformer.encoder.layers.0.norm1.weight",
        "pixel_decoder.transformer.encoder.layers.0.linear1.weight",
        "pixel_decoder.transformer.encoder.layers.0.linear2.bias",
        "pixel_decoder.transformer.encoder.layers.0.norm2.bias",
        "pixel_decoder.mask_features.weight", "pixel_decoder.mask_features.bias",
        "pixel_decoder.adapter_1.weight", "pixel_decoder.adapter_1.norm.weight", "pixel_decoder.layer_1.weight",
        "pixel_decoder.layer_1.norm.bias",
        "predictor.transformer_self_attention_layers.8.self_attn.in_proj_weight",
        "predictor.transformer_self_attention_layers.0.norm.weight",
        "predictor.transformer_cross_attention_layers.0.multihead_attn.out_proj.weight",
        "predictor.transformer_ffn_layers.0.linear1.weight", "predictor.transformer_ffn_layers.0.norm.bias",
        "predictor.decoder_norm.weight", "predictor.query_feat.weight", "predictor.query_embed.weight",
        "predictor.level_embed.weight", "predictor.class_embed.weight", "predictor.mask_embed.layers.2.weight"}
    assert expected <= keys, sorted(expected - keys)
    assert not any(k.startswith("predictor.input_proj") for k in keys)  # empty Sequentials, as official
    assert "pixel_decoder.adapter_1.bias" not in keys and "pixel_decoder.layer_1.bias" not in keys  # GN: no bias
    assert "predictor.transformer_self_attention_layers.9.norm.weight" not in keys  # 9 layers
    assert head.predictor.class_embed.out_features == 151


def test_pixel_decoder_rejects_bad_input():
    dec = MSDeformAttnPixelDecoder(CHANNELS, conv_dim=CONV, mask_dim=CONV, transformer_nheads=HEADS,
                                   transformer_enc_layers=1)
    features = _features(b=1, h=32, w=32)
    with pytest.raises(ValueError, match="features must be a list of 4 maps"):
        dec(features[1:])
    with pytest.raises(ValueError, match=r"features\[2\] must be \(B, 24, H, W\) \(in_channels\[2\] = 24\)"):
        dec(features[:2] + [features[2][:, :5]] + features[3:])
    with pytest.raises(ValueError, match="in_channels must be 4 channel counts"):
        MSDeformAttnPixelDecoder([8, 16, 24])
    with pytest.raises(ValueError, match="conv_dim must be divisible by norm_groups=32"):
        MSDeformAttnPixelDecoder(CHANNELS, conv_dim=48)


def test_official_initialisation():
    """The encoder's Xavier pass must not overwrite MSDeformAttn's own init (zero offset / attention weights, ring
    offsets in the bias), as the official order (Xavier, then each MSDeformAttn's reset) guarantees."""
    torch.manual_seed(0)
    dec = MSDeformAttnPixelDecoder(CHANNELS, conv_dim=CONV, mask_dim=CONV, transformer_nheads=HEADS,
                                   transformer_dim_feedforward=ENC_FFN, transformer_enc_layers=2).requires_grad_(False)
    for layer in dec.transformer.encoder.layers:
        attn = layer.self_attn
        assert bool((attn.sampling_offsets.weight == 0).all()) and bool((attn.attention_weights.weight == 0).all())
        assert bool((attn.attention_weights.bias == 0).all())
        offsets = attn.sampling_offsets.bias.view(HEADS, 3, 4, 2)
        assert_close(offsets[0, :, :, 0], torch.arange(1.0, 5.0).expand(3, 4))  # head 0 points along +x, k steps
        assert float(layer.linear1.weight.abs().max()) <= (6 / (CONV + ENC_FFN)) ** 0.5 + 1e-6  # Xavier bound
    assert float(dec.transformer.level_embed.std()) > 0.5  # normal(0, 1)
    assert bool((dec.input_proj[0][0].bias == 0).all()) and dec.adapter_1.bias is None
