"""Mask2Former's masked-attention transformer decoder and sine position encoding against HF transformers'
``Mask2FormerTransformerModule`` / ``Mask2FormerSinePositionEmbedding`` with weights mapped from ours."""
from __future__ import annotations

import pytest
import torch

from semask_models.heads.mask2former import MultiScaleMaskedTransformerDecoder, PositionEmbeddingSine
from tests.utils import assert_close

m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")

K, HIDDEN, HEADS, FFN, QUERIES = 3, 32, 4, 48, 7


def _hf_config(dec_layers):
    return m2f.Mask2FormerConfig(hidden_dim=HIDDEN, num_attention_heads=HEADS, dim_feedforward=FFN,
                                 decoder_layers=dec_layers, num_queries=QUERIES, mask_feature_size=HIDDEN,
                                 num_labels=K, dropout=0.0, pre_norm=False)


def _hf_state_dict(ours: MultiScaleMaskedTransformerDecoder) -> dict:
    sd = {"queries_embedder.weight": ours.query_embed.weight, "queries_features.weight": ours.query_feat.weight,
          "level_embed.weight": ours.level_embed.weight, "decoder.layernorm.weight": ours.decoder_norm.weight,
          "decoder.layernorm.bias": ours.decoder_norm.bias}
    for i, proj in enumerate(ours.input_proj):
        for name, p in proj.named_parameters():
            sd[f"input_projections.{i}.{name}"] = p
    for j, layer in enumerate(ours.mask_embed.layers):
        sd[f"decoder.mask_predictor.mask_embedder.{j}.0.weight"] = layer.weight
        sd[f"decoder.mask_predictor.mask_embedder.{j}.0.bias"] = layer.bias
    for i in range(ours.num_layers):
        sa, ca, ffn = (ours.transformer_self_attention_layers[i], ours.transformer_cross_attention_layers[i],
                       ours.transformer_ffn_layers[i])
        pre = f"decoder.layers.{i}."
        for name, w, b in zip("qkv", sa.self_attn.in_proj_weight.chunk(3), sa.self_attn.in_proj_bias.chunk(3)):
            sd[pre + f"self_attn.{name}_proj.weight"], sd[pre + f"self_attn.{name}_proj.bias"] = w, b
        sd[pre + "self_attn.out_proj.weight"] = sa.self_attn.out_proj.weight
        sd[pre + "self_attn.out_proj.bias"] = sa.self_attn.out_proj.bias
        for name, p in ca.multihead_attn.named_parameters():
            sd[pre + "cross_attn." + name] = p
        pairs = [("self_attn_layer_norm", sa.norm), ("cross_attn_layer_norm", ca.norm), ("fc1", ffn.linear1),
                 ("fc2", ffn.linear2), ("final_layer_norm", ffn.norm)]
        for name, mod in pairs:
            sd[pre + name + ".weight"], sd[pre + name + ".bias"] = mod.weight, mod.bias
    return {k: v.detach().clone() for k, v in sd.items()}


@pytest.mark.parametrize("in_channels, dec_layers, mask_shift", [(HIDDEN, 5, 0.0), (24, 4, -4.0)])
def test_decoder_matches_hf(in_channels, dec_layers, mask_shift):
    torch.manual_seed(0)
    ours = MultiScaleMaskedTransformerDecoder(in_channels, K, hidden_dim=HIDDEN, num_queries=QUERIES, nheads=HEADS,
                                              dim_feedforward=FFN, dec_layers=dec_layers, mask_dim=HIDDEN).eval()
    for p in ours.parameters():  # non-trivial biases and norms
        p.data.add_(0.05 * torch.randn_like(p))
    hf = m2f.Mask2FormerTransformerModule(in_features=in_channels, config=_hf_config(dec_layers)).eval()
    hf.load_state_dict(_hf_state_dict(ours), strict=True)
    # strides 32/16/8 of a 40×56 input (odd sizes), mask features at stride 4; mask_shift < 0 empties masks so
    # some queries attend everywhere
    features = [torch.randn(2, in_channels, h, w) for h, w in ((2, 2), (3, 4), (5, 7))]
    mask_features = torch.randn(2, HIDDEN, 10, 14) + mask_shift
    out = ours(features, mask_features)
    with torch.no_grad():
        ref = hf(features, mask_features)
    preds = out["aux_outputs"] + [out]
    assert len(preds) == dec_layers == len(ref.masks_queries_logits)
    empty = 0
    for i, (p, mask, hidden) in enumerate(zip(preds, ref.masks_queries_logits, ref.intermediate_hidden_states)):
        assert_close(p["pred_masks"], mask, name=f"pred_masks {i}")
        assert_close(p["pred_logits"], ours.class_embed(hidden.transpose(0, 1)), name=f"pred_logits {i}")
        empty += int((mask < 0).flatten(2).all(-1).sum())
    assert out["pred_logits"].shape == (2, QUERIES, K + 1) and out["pred_masks"].shape == (2, QUERIES, 10, 14)
    if mask_shift < 0:
        assert empty > 0, "no query had an empty mask: the attend-everywhere path went untested"


def test_decoder_backward_and_official_names():
    ours = MultiScaleMaskedTransformerDecoder(HIDDEN, K, hidden_dim=HIDDEN, num_queries=4, nheads=HEADS,
                                              dim_feedforward=FFN, dec_layers=3, mask_dim=16)
    features = [torch.randn(1, HIDDEN, s, s) for s in (2, 4, 8)]
    out = ours(features, torch.randn(1, 16, 16, 16))
    (out["pred_logits"].sum() + out["pred_masks"].sum()
     + sum(a["pred_masks"].sum() + a["pred_logits"].sum() for a in out["aux_outputs"])).backward()
    unused = [n for n, p in ours.named_parameters() if p.grad is None]
    assert unused == [], f"parameters without gradient: {unused}"
    keys = set(ours.state_dict())
    for key in ("query_feat.weight", "query_embed.weight", "level_embed.weight", "class_embed.weight",
                "mask_embed.layers.2.bias", "decoder_norm.weight", "transformer_ffn_layers.1.linear1.weight",
                "transformer_self_attention_layers.0.self_attn.in_proj_weight",
                "transformer_cross_attention_layers.1.multihead_attn.out_proj.weight"):
        assert key in keys, key


def test_decoder_rejects_bad_input():
    ours = MultiScaleMaskedTransformerDecoder(HIDDEN, K, hidden_dim=HIDDEN, num_queries=4, nheads=HEADS,
                                              dim_feedforward=FFN, dec_layers=2, mask_dim=16)
    features = [torch.randn(1, HIDDEN, s, s) for s in (2, 4, 8)]
    with pytest.raises(ValueError, match="features must be a list of 3 maps"):
        ours(features[:2], torch.randn(1, 16, 8, 8))
    with pytest.raises(ValueError, match="mask_features must be .*mask_dim=16"):
        ours(features, torch.randn(1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"features\[1\] must be \(B=2"):
        ours([torch.randn(2, HIDDEN, 2, 2), features[1], torch.randn(2, HIDDEN, 8, 8)], torch.randn(2, 16, 8, 8))
    with pytest.raises(ValueError, match="hidden_dim must be even and divisible by nheads=5"):
        MultiScaleMaskedTransformerDecoder(HIDDEN, K, hidden_dim=HIDDEN, nheads=5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        MultiScaleMaskedTransformerDecoder(HIDDEN, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_position_encoding_matches_hf(dtype):
    x = torch.zeros(2, 5, 3, 7, dtype=dtype)
    ours = PositionEmbeddingSine(16, normalize=True)(x)
    ref = m2f.Mask2FormerSinePositionEmbedding(num_position_features=16, normalize=True)(x.shape, x.device,
                                                                                        torch.float32)
    assert ours.shape == (2, 32, 3, 7) and ours.dtype == dtype
    assert_close(ours.float(), ref, dtype=dtype)
    plain = PositionEmbeddingSine(8)(x.float())
    assert_close(plain, m2f.Mask2FormerSinePositionEmbedding(num_position_features=8)(x.shape, x.device,
                                                                                     torch.float32))
    with pytest.raises(ValueError, match="num_pos_feats must be an even int"):
        PositionEmbeddingSine(7)
