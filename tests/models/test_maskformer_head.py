"""The MaskFormer head against Hugging Face transformers' MaskFormer modules (an independent implementation), with
our weights mapped into theirs: the FPN pixel decoder, the DETR transformer decoder with the sine position
embedding, and the class / mask-embedding predictions of every decoder layer."""
import types

import pytest
import torch

from semask_models.heads.maskformer import MaskFormerHead
from semask_models.heads.maskformer.layers import sine_position_embedding
from tests.utils import assert_close

hf = pytest.importorskip("transformers.models.maskformer.modeling_maskformer")
from transformers.models.maskformer.configuration_maskformer import MaskFormerDetrConfig  # noqa: E402

IN_CHANNELS = [24, 40, 72, 96]
SIZES = [(21, 27), (11, 14), (6, 7), (3, 4)]  # odd sizes: the nearest upsampling must land on each lateral


def _head(dropout=0.0):
    torch.manual_seed(0)
    head = MaskFormerHead(IN_CHANNELS, num_classes=9, conv_dim=64, mask_dim=48, hidden_dim=64, num_queries=7,
                          nheads=4, dropout=dropout, dim_feedforward=96, dec_layers=3)
    with torch.no_grad():  # GN and LN affine away from (1, 0), so a swapped norm would show
        for name, p in head.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return head.eval()


def _features(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=g) for c, (h, w) in zip(IN_CHANNELS, SIZES)]


def _hf_pixel_decoder(head):
    pd = head.pixel_decoder
    ref = hf.MaskFormerPixelDecoder(in_features=IN_CHANNELS[-1], lateral_widths=IN_CHANNELS[:-1], feature_size=64,
                                    mask_feature_size=48)
    sd = {"fpn.stem.0.weight": pd.layer_4.weight, "fpn.stem.1.weight": pd.layer_4.norm.weight,
          "fpn.stem.1.bias": pd.layer_4.norm.bias,
          "mask_projection.weight": pd.mask_features.weight, "mask_projection.bias": pd.mask_features.bias}
    for j, stage in enumerate((3, 2, 1)):  # HF's FPN layers run top-down: stage 3 first
        adapter, layer = getattr(pd, f"adapter_{stage}"), getattr(pd, f"layer_{stage}")
        p = f"fpn.layers.{j}."
        sd.update({p + "proj.0.weight": adapter.weight, p + "proj.1.weight": adapter.norm.weight,
                   p + "proj.1.bias": adapter.norm.bias, p + "block.0.weight": layer.weight,
                   p + "block.1.weight": layer.norm.weight, p + "block.1.bias": layer.norm.bias})
    ref.load_state_dict(sd, strict=True)
    return ref.eval()


def test_pixel_decoder_matches_transformers():
    head = _head()
    ref = _hf_pixel_decoder(head)
    feats = _features()
    with torch.no_grad():
        ours = head.pixel_decoder(feats)
        theirs = ref(feats).last_hidden_state
    assert ours.shape == (2, 48, *SIZES[0])
    assert_close(ours, theirs, torch.float32, "mask features")


def _hf_transformer(head):
    pred = head.predictor
    cfg = MaskFormerDetrConfig(d_model=64, decoder_layers=3, decoder_attention_heads=4, decoder_ffn_dim=96,
                               num_queries=7, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                               activation_function="relu", auxiliary_loss=False)
    cfg.hidden_size = 64
    module = hf.MaskFormerTransformerModule(IN_CHANNELS[-1], types.SimpleNamespace(decoder_config=cfg))
    sd = {"queries_embedder.weight": pred.query_embed.weight, "input_projection.weight": pred.input_proj.weight,
          "input_projection.bias": pred.input_proj.bias,
          "decoder.layernorm.weight": pred.transformer.decoder.norm.weight,
          "decoder.layernorm.bias": pred.transformer.decoder.norm.bias}
    for i, layer in enumerate(pred.transformer.decoder.layers):
        p = f"decoder.layers.{i}."
        for ours, theirs in (("self_attn", "self_attn"), ("multihead_attn", "encoder_attn")):
            attn = getattr(layer, ours)
            for k, proj in enumerate(("q_proj", "k_proj", "v_proj")):  # in_proj rows are [q; k; v]
                sd[f"{p}{theirs}.{proj}.weight"] = attn.in_proj_weight[64 * k: 64 * (k + 1)]
                sd[f"{p}{theirs}.{proj}.bias"] = attn.in_proj_bias[64 * k: 64 * (k + 1)]
            sd[f"{p}{theirs}.o_proj.weight"] = attn.out_proj.weight
            sd[f"{p}{theirs}.o_proj.bias"] = attn.out_proj.bias
        for ours, theirs in (("norm1", "self_attn_layer_norm"), ("norm2", "encoder_attn_layer_norm"),
                             ("norm3", "final_layer_norm"), ("linear1", "mlp.fc1"), ("linear2", "mlp.fc2")):
            sd[f"{p}{theirs}.weight"] = getattr(layer, ours).weight
            sd[f"{p}{theirs}.bias"] = getattr(layer, ours).bias
    module.load_state_dict(sd, strict=True)
    return module.eval()


def _hf_predictions(head, module, feats, mask_features):
    """HF's per-layer queries (each through the shared final LayerNorm, as MaskFormer's deep supervision), then
    our class / mask-embedding layers mapped into HF's ``MaskformerMLPPredictionHead``."""
    outs = []
    hooks = [layer.register_forward_hook(lambda m, a, out: outs.append(out[0] if isinstance(out, tuple) else out))
             for layer in module.decoder.layers]
    final = module(feats[-1]).last_hidden_state
    for h in hooks:
        h.remove()
    layers = [module.decoder.layernorm(o) for o in outs]
    assert_close(layers[-1], final, torch.float32, "HF final layer norm")
    mlp = hf.MaskformerMLPPredictionHead(64, 64, 48)
    mlp.load_state_dict({f"{i}.0.{w}": getattr(head.predictor.mask_embed.layers[i], w)
                         for i in range(3) for w in ("weight", "bias")}, strict=True)
    logits = [head.predictor.class_embed(q) for q in layers]
    masks = [torch.einsum("bqc,bchw->bqhw", mlp(q), mask_features) for q in layers]
    return logits, masks


def test_predictor_matches_transformers_on_every_layer():
    head = _head()
    module = _hf_transformer(head)
    feats = _features()
    with torch.no_grad():
        mask_features = head.pixel_decoder(feats)
        ours = head.predictor(feats[-1], mask_features)
        logits, masks = _hf_predictions(head, module, feats, mask_features)
    assert ours["pred_logits"].shape == (2, 7, 10) and ours["pred_masks"].shape == (2, 7, *SIZES[0])
    assert len(ours["aux_outputs"]) == 2
    mine = ours["aux_outputs"] + [{"pred_logits": ours["pred_logits"], "pred_masks": ours["pred_masks"]}]
    for i, out in enumerate(mine):
        assert_close(out["pred_logits"], logits[i], torch.float32, f"class logits, layer {i}")
        assert_close(out["pred_masks"], masks[i], torch.float32, f"mask logits, layer {i}", scale=10)


def test_sine_position_embedding_matches_transformers():
    x = torch.randn(2, 64, 5, 9)
    ref = hf.MaskFormerSinePositionEmbedding(num_position_features=32, normalize=True)
    assert_close(sine_position_embedding(x, 32), ref(x.shape, x.device, torch.float32), torch.float32, "pos")


def test_head_end_to_end_gradients_and_dropout():
    head = _head(dropout=0.1).train()
    feats = [f.requires_grad_() for f in _features(batch=1)]
    out = head(feats)
    loss = out["pred_logits"].logsumexp(-1).mean() + out["pred_masks"].sigmoid().mean()
    loss = loss + sum(a["pred_masks"].mean() for a in out["aux_outputs"])
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    unused = [n for n, p in head.named_parameters() if p.grad is None]
    assert unused == []
    torch.manual_seed(0)
    a = head(feats)["pred_logits"]
    torch.manual_seed(1)
    b = head(feats)["pred_logits"]
    assert not torch.allclose(a, b)  # dropout 0.1 is active in train mode
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(feats)["pred_logits"], head(feats)["pred_logits"])


def test_bad_inputs_are_refused():
    head = _head()
    with pytest.raises(ValueError, match="features must hold 4 maps"):
        head(_features()[:3])
    with pytest.raises(ValueError, match="hidden_dim 30 must be divisible by nheads 4"):
        MaskFormerHead(IN_CHANNELS, 3, conv_dim=32, hidden_dim=30, nheads=4)
    with pytest.raises(ValueError, match="channels 40 must be divisible by 32 groups"):
        MaskFormerHead(IN_CHANNELS, 3, conv_dim=40)
