"""Official SeMask-MaskFormer checkpoints (detectron2 .pkl / .pth): the official key layout loads with no missing or
unexpected keys, and the restricted unpickler refuses anything but numpy arrays without executing it.

The key lists are written from the official module names (SeMask ``D2SeMaskSwinTransformer``; MaskFormer
``BasePixelDecoder`` / ``TransformerPredictor`` / DETR ``Transformer``; Mask2Former ``MSDeformAttnPixelDecoder`` /
``MultiScaleMaskedTransformerDecoder``; ``SetCriterion.empty_weight``), not from this package's modules."""
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import semask_models as sm
from semask_models.detectron2_checkpoint import (
    UnsafePickleError,
    load_detectron2_checkpoint,
    read_pkl,
    upgrade_head_layout,
)

TINY = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4, head_channels=32,
            mask_dim=32, hidden_dim=32, num_queries=5, nheads=2, dim_feedforward=64, dec_layers=2,
            drop_path_rate=0.0)


def official_swin_keys(embed_dim, depths, window_size, num_classes=None, mlp_ratio=4):
    """(name, shape) of the official (SeMask-)Swin backbone, ``backbone.``-prefixed, buffers included."""
    keys = [("patch_embed.proj.weight", (embed_dim, 3, 4, 4)), ("patch_embed.proj.bias", (embed_dim,)),
            ("patch_embed.norm.weight", (embed_dim,)), ("patch_embed.norm.bias", (embed_dim,))]
    n = window_size * window_size
    for i, depth in enumerate(depths):
        c = embed_dim * 2 ** i
        heads = {96: (3, 6, 12, 24), 128: (4, 8, 16, 32), 192: (6, 12, 24, 48)}.get(embed_dim, (1, 2, 4, 8))[i]
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            keys += [(b + "norm1.weight", (c,)), (b + "norm1.bias", (c,)),
                     (b + "attn.relative_position_bias_table", ((2 * window_size - 1) ** 2, heads)),
                     (b + "attn.relative_position_index", (n, n)),
                     (b + "attn.qkv.weight", (3 * c, c)), (b + "attn.qkv.bias", (3 * c,)),
                     (b + "attn.proj.weight", (c, c)), (b + "attn.proj.bias", (c,)),
                     (b + "norm2.weight", (c,)), (b + "norm2.bias", (c,)),
                     (b + "mlp.fc1.weight", (mlp_ratio * c, c)), (b + "mlp.fc1.bias", (mlp_ratio * c,)),
                     (b + "mlp.fc2.weight", (c, mlp_ratio * c)), (b + "mlp.fc2.bias", (c,))]
        if num_classes is not None:
            s = f"layers.{i}.semantic_layer."
            a = s + "class_injection.0."
            keys += [(s + "norm1.weight", (c,)), (s + "norm1.bias", (c,)),
                     (a + "mlp_cls_q.weight", (num_classes, c)), (a + "mlp_cls_q.bias", (num_classes,)),
                     (a + "mlp_cls_k.weight", (num_classes, c)), (a + "mlp_cls_k.bias", (num_classes,)),
                     (a + "mlp_v.weight", (c, c)), (a + "mlp_v.bias", (c,)),
                     (a + "mlp_res.weight", (c, c)), (a + "mlp_res.bias", (c,)), (a + "gamma", (1,))]
        if i < len(depths) - 1:
            keys += [(f"layers.{i}.downsample.reduction.weight", (2 * c, 4 * c)),
                     (f"layers.{i}.downsample.norm.weight", (4 * c,)), (f"layers.{i}.downsample.norm.bias", (4 * c,))]
        keys += [(f"norm{i}.weight", (c,)), (f"norm{i}.bias", (c,))]
    return [("backbone." + k, s) for k, s in keys]


def official_maskformer_head_keys(in_channels, num_classes, conv_dim=256, mask_dim=256, hidden=256, queries=100,
                                  ffn=2048, dec_layers=6):
    """(name, shape) of the official MaskFormer ``sem_seg_head`` (BasePixelDecoder with GN + TransformerPredictor on
    res5, ENC_LAYERS 0) and the criterion's ``empty_weight`` buffer."""
    pd = "sem_seg_head.pixel_decoder."
    keys = []
    for idx, c in enumerate(in_channels):
        n = idx + 1
        if idx < len(in_channels) - 1:
            keys += [(f"{pd}adapter_{n}.weight", (conv_dim, c, 1, 1)), (f"{pd}adapter_{n}.norm.weight", (conv_dim,)),
                     (f"{pd}adapter_{n}.norm.bias", (conv_dim,)), (f"{pd}layer_{n}.weight", (conv_dim, conv_dim, 3, 3))]
        else:
            keys += [(f"{pd}layer_{n}.weight", (conv_dim, c, 3, 3))]
        keys += [(f"{pd}layer_{n}.norm.weight", (conv_dim,)), (f"{pd}layer_{n}.norm.bias", (conv_dim,))]
    keys += [(pd + "mask_features.weight", (mask_dim, conv_dim, 3, 3)), (pd + "mask_features.bias", (mask_dim,))]
    p = "sem_seg_head.predictor."
    for layer in range(dec_layers):
        d = f"{p}transformer.decoder.layers.{layer}."
        for attn in ("self_attn", "multihead_attn"):
            keys += [(f"{d}{attn}.in_proj_weight", (3 * hidden, hidden)), (f"{d}{attn}.in_proj_bias", (3 * hidden,)),
                     (f"{d}{attn}.out_proj.weight", (hidden, hidden)), (f"{d}{attn}.out_proj.bias", (hidden,))]
        keys += [(d + "linear1.weight", (ffn, hidden)), (d + "linear1.bias", (ffn,)),
                 (d + "linear2.weight", (hidden, ffn)), (d + "linear2.bias", (hidden,))]
        keys += [(f"{d}norm{k}.{w}", (hidden,)) for k in (1, 2, 3) for w in ("weight", "bias")]
    keys += [(p + "transformer.decoder.norm.weight", (hidden,)), (p + "transformer.decoder.norm.bias", (hidden,)),
             (p + "query_embed.weight", (queries, hidden)),
             (p + "input_proj.weight", (hidden, in_channels[-1], 1, 1)), (p + "input_proj.bias", (hidden,)),
             (p + "class_embed.weight", (num_classes + 1, hidden)), (p + "class_embed.bias", (num_classes + 1,))]
    for i in range(3):
        out = mask_dim if i == 2 else hidden
        keys += [(f"{p}mask_embed.layers.{i}.weight", (out, hidden)), (f"{p}mask_embed.layers.{i}.bias", (out,))]
    keys += [("criterion.empty_weight", (num_classes + 1,))]
    return keys


def official_mask2former_head_keys(in_channels, num_classes, conv_dim=256, mask_dim=256, hidden=256, queries=100,
                                   ffn=2048, dec_layers=10, enc_layers=6, enc_heads=8, enc_ffn=1024, points=4):
    """(name, shape) of the official Mask2Former ``sem_seg_head`` (MSDeformAttnPixelDecoder on res3-5 with GN,
    MultiScaleMaskedTransformerDecoder with DEC_LAYERS - 1 layers, input_proj empty when conv_dim == hidden)."""
    pd = "sem_seg_head.pixel_decoder."
    keys = []
    for i, c in enumerate(in_channels[1:][::-1]):  # input_proj[0] reads res5
        keys += [(f"{pd}input_proj.{i}.0.weight", (conv_dim, c, 1, 1)), (f"{pd}input_proj.{i}.0.bias", (conv_dim,)),
                 (f"{pd}input_proj.{i}.1.weight", (conv_dim,)), (f"{pd}input_proj.{i}.1.bias", (conv_dim,))]
    keys += [(pd + "transformer.level_embed", (3, conv_dim))]
    for layer in range(enc_layers):
        e = f"{pd}transformer.encoder.layers.{layer}."
        for name, out in (("sampling_offsets", enc_heads * 3 * points * 2),
                          ("attention_weights", enc_heads * 3 * points), ("value_proj", conv_dim),
                          ("output_proj", conv_dim)):
            keys += [(f"{e}self_attn.{name}.weight", (out, conv_dim)), (f"{e}self_attn.{name}.bias", (out,))]
        keys += [(e + "linear1.weight", (enc_ffn, conv_dim)), (e + "linear1.bias", (enc_ffn,)),
                 (e + "linear2.weight", (conv_dim, enc_ffn)), (e + "linear2.bias", (conv_dim,))]
        keys += [(f"{e}norm{k}.{w}", (conv_dim,)) for k in (1, 2) for w in ("weight", "bias")]
    keys += [(pd + "mask_features.weight", (mask_dim, conv_dim, 1, 1)), (pd + "mask_features.bias", (mask_dim,)),
             (pd + "adapter_1.weight", (conv_dim, in_channels[0], 1, 1)), (pd + "adapter_1.norm.weight", (conv_dim,)),
             (pd + "adapter_1.norm.bias", (conv_dim,)), (pd + "layer_1.weight", (conv_dim, conv_dim, 3, 3)),
             (pd + "layer_1.norm.weight", (conv_dim,)), (pd + "layer_1.norm.bias", (conv_dim,))]
    p = "sem_seg_head.predictor."
    for layer in range(dec_layers - 1):
        for group, attn in (("transformer_self_attention_layers", "self_attn"),
                            ("transformer_cross_attention_layers", "multihead_attn")):
            a = f"{p}{group}.{layer}."
            keys += [(f"{a}{attn}.in_proj_weight", (3 * hidden, hidden)), (f"{a}{attn}.in_proj_bias", (3 * hidden,)),
                     (f"{a}{attn}.out_proj.weight", (hidden, hidden)), (f"{a}{attn}.out_proj.bias", (hidden,)),
                     (a + "norm.weight", (hidden,)), (a + "norm.bias", (hidden,))]
        f = f"{p}transformer_ffn_layers.{layer}."
        keys += [(f + "linear1.weight", (ffn, hidden)), (f + "linear1.bias", (ffn,)),
                 (f + "linear2.weight", (hidden, ffn)), (f + "linear2.bias", (hidden,)),
                 (f + "norm.weight", (hidden,)), (f + "norm.bias", (hidden,))]
    keys += [(p + "decoder_norm.weight", (hidden,)), (p + "decoder_norm.bias", (hidden,)),
             (p + "query_feat.weight", (queries, hidden)), (p + "query_embed.weight", (queries, hidden)),
             (p + "level_embed.weight", (3, hidden)),
             (p + "class_embed.weight", (num_classes + 1, hidden)), (p + "class_embed.bias", (num_classes + 1,))]
    if conv_dim != hidden:
        for i in range(3):
            keys += [(f"{p}input_proj.{i}.weight", (hidden, conv_dim, 1, 1)), (f"{p}input_proj.{i}.bias", (hidden,))]
    for i in range(3):
        out = mask_dim if i == 2 else hidden
        keys += [(f"{p}mask_embed.layers.{i}.weight", (out, hidden)), (f"{p}mask_embed.layers.{i}.bias", (out,))]
    keys += [("criterion.empty_weight", (num_classes + 1,))]
    return keys


def _official_tiny_keys(semantic=True, k=5):
    dims = [32, 64, 128, 256]
    return (official_swin_keys(32, TINY["depths"], 4, k if semantic else None)
            + official_maskformer_head_keys(dims, k, conv_dim=32, mask_dim=32, hidden=32, queries=5, ffn=64,
                                            dec_layers=2))


def _synthetic_arrays(keys, seed=0):
    rng = np.random.default_rng(seed)
    out = OrderedDict()
    for name, shape in keys:
        if name.endswith("relative_position_index"):
            out[name] = rng.integers(0, 49, size=shape).astype(np.int64)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def _tiny_model(name="semask_swin_t_maskformer"):
    torch.manual_seed(0)
    return sm.build_model(name, num_classes=5, **TINY)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_official_pkl_layout_loads_completely(tmp_path, protocol):
    arrays = _synthetic_arrays(_official_tiny_keys())
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "SeMask", "matching_heuristics": True}, f, protocol=protocol)
    model = _tiny_model()
    report = load_detectron2_checkpoint(model, path)
    assert report.missing == [] and report.unused == [], str(report)
    assert report.complete
    sd = model.state_dict()
    for name, value in arrays.items():
        if name in sd:
            assert torch.equal(sd[name], torch.from_numpy(value)), name
    assert sum(n in sd for n in arrays) == len(sd)  # every model key came from the file


def test_official_pth_layout_loads_completely(tmp_path):
    arrays = _synthetic_arrays(_official_tiny_keys(semantic=False), seed=1)
    path = tmp_path / "model_final.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in arrays.items()}, "iteration": 159999}, path)
    model = _tiny_model("swin_t_maskformer")
    report = load_detectron2_checkpoint(model, path)
    assert report.complete, str(report)
    assert torch.equal(model.state_dict()["sem_seg_head.predictor.query_embed.weight"],
                       torch.from_numpy(arrays["sem_seg_head.predictor.query_embed.weight"]))


@pytest.mark.parametrize("variant,k", [("l", 150), ("t", 19)])
def test_official_full_size_key_layout_matches_the_model(variant, k):
    """Names and shapes of the official Swin-L / Swin-T SeMask-MaskFormer match ours exactly (meta device)."""
    dims = {"t": (96, (2, 2, 6, 2), 7), "l": (192, (2, 2, 18, 2), 12)}[variant]
    official = dict(official_swin_keys(*dims, num_classes=k)
                    + official_maskformer_head_keys([dims[0] * 2 ** i for i in range(4)], k))
    with torch.device("meta"):
        model = sm.build_model(f"semask_swin_{variant}_maskformer", num_classes=k)
    ours = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    rebuilt = {n for n in official if n.endswith("relative_position_index") or n == "criterion.empty_weight"}
    assert set(ours) == set(official) - rebuilt
    assert all(ours[n] == official[n] for n in ours), [n for n in ours if ours[n] != official[n]][:5]


@pytest.mark.parametrize("variant,k", [("l", 150), ("l", 19), ("t", 150)])
def test_official_mask2former_full_size_key_layout_matches_the_model(variant, k):
    dims = {"t": (96, (2, 2, 6, 2), 7), "l": (192, (2, 2, 18, 2), 12)}[variant]
    official = dict(official_swin_keys(*dims, num_classes=k)
                    + official_mask2former_head_keys([dims[0] * 2 ** i for i in range(4)], k))
    with torch.device("meta"):
        model = sm.build_model(f"semask_swin_{variant}_mask2former", num_classes=k)
    ours = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    rebuilt = {n for n in official if n.endswith("relative_position_index") or n == "criterion.empty_weight"}
    assert sorted(set(ours) ^ (set(official) - rebuilt)) == []
    assert [n for n in ours if ours[n] != official[n]] == []


def test_official_mask2former_pkl_loads_completely(tmp_path):
    tiny = dict(TINY, dec_layers=3, enc_layers=1)
    keys = (official_swin_keys(32, TINY["depths"], 4, 5)
            + official_mask2former_head_keys([32, 64, 128, 256], 5, conv_dim=32, mask_dim=32, hidden=32, queries=5,
                                             ffn=64, dec_layers=3, enc_layers=1))
    arrays = _synthetic_arrays(keys, seed=2)
    path = tmp_path / "m2f.pkl"
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "SeMask"}))
    torch.manual_seed(0)
    model = sm.build_model("semask_swin_t_mask2former", num_classes=5, **tiny)
    report = load_detectron2_checkpoint(model, path)
    assert report.complete, str(report)
    sd = model.state_dict()
    assert all(torch.equal(sd[n], torch.from_numpy(v)) for n, v in arrays.items() if n in sd)


def test_version1_head_layout_is_upgraded():
    keys = _official_tiny_keys()
    old = {k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."): torch.from_numpy(v)
           for k, v in _synthetic_arrays(keys).items()}
    assert "sem_seg_head.adapter_1.weight" in old
    upgraded = upgrade_head_layout(old)
    assert "sem_seg_head.pixel_decoder.adapter_1.weight" in upgraded
    assert "sem_seg_head.predictor.query_embed.weight" in upgraded
    report = load_detectron2_checkpoint(_tiny_model(), old)
    assert report.complete, str(report)


def test_missing_unexpected_and_wrong_shapes(tmp_path):
    arrays = _synthetic_arrays(_official_tiny_keys())
    del arrays["sem_seg_head.predictor.class_embed.bias"]
    arrays["sem_seg_head.predictor.extra.weight"] = np.zeros(3, np.float32)
    path = tmp_path / "partial.pkl"
    path.write_bytes(pickle.dumps({"model": arrays}))
    report = load_detectron2_checkpoint(_tiny_model(), path, allow_partial=True)
    assert report.missing == ["sem_seg_head.predictor.class_embed.bias"]
    assert report.unused == ["sem_seg_head.predictor.extra.weight"]
    assert not report.complete
    arrays = _synthetic_arrays(_official_tiny_keys())
    arrays["sem_seg_head.predictor.class_embed.weight"] = np.zeros((7, 32), np.float32)  # K = 6, not 5
    with pytest.raises(ValueError, match=r"'sem_seg_head.predictor.class_embed.weight' has shape \(7, 32\)"):
        load_detectron2_checkpoint(_tiny_model(), {k: torch.from_numpy(v) for k, v in arrays.items()})


def test_imagenet_swin_pkl_goes_into_the_backbone(tmp_path):
    """detectron2's converted ImageNet Swin (``swin_large_patch4_window12_384_22k.pkl``: the classification keys in
    a .pkl) through ``convert.load_checkpoint``, as ``pretrained:`` does."""
    from semask_models.convert import load_checkpoint
    swin = [(k[len("backbone."):], s) for k, s in official_swin_keys(32, TINY["depths"], 4)
            if not k.startswith("backbone.norm")]  # the classifier has one final norm, not norm0-3
    swin += [("norm.weight", (256,)), ("norm.bias", (256,)), ("head.weight", (10, 256)), ("head.bias", (10,))]
    arrays = _synthetic_arrays(swin, seed=5)
    path = tmp_path / "swin_tiny_22k.pkl"
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "third_party", "matching_heuristics": True}))
    model = _tiny_model()
    report = load_checkpoint(model, path, allow_partial=True)  # an ImageNet backbone: partial by design
    sd = model.state_dict()
    assert torch.equal(sd["backbone.layers.2.blocks.1.attn.qkv.weight"],
                       torch.from_numpy(arrays["layers.2.blocks.1.attn.qkv.weight"]))
    assert "backbone.norm0.weight" in report.missing and "sem_seg_head.predictor.query_embed.weight" in report.missing
    assert not any(k.startswith("backbone.layers") and "semantic_layer" not in k for k in report.missing)
    assert {"head.weight", "norm.weight"} <= set(report.unexpected)


def test_non_segmentor_checkpoints_are_refused(tmp_path):
    path = tmp_path / "swin.pkl"
    path.write_bytes(pickle.dumps({"model": {"layers.0.blocks.0.norm1.weight": np.ones(4, np.float32)}}))
    with pytest.raises(ValueError, match="not a detectron2 segmentor checkpoint"):
        load_detectron2_checkpoint(_tiny_model(), path)


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    weights = {"backbone.patch_embed.proj.bias": np.zeros(32, np.float32),
               "backbone.norm0.weight": _RunsCommand(f"touch {marker}")}
    path.write_bytes(pickle.dumps({"model": weights}))
    with pytest.raises(UnsafePickleError, match=r"global (posix|os|nt)\.system"):
        read_pkl(path)
    with pytest.raises(UnsafePickleError):
        load_detectron2_checkpoint(_tiny_model(), path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Evaluates()))
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        read_pkl(path)


def test_other_numpy_globals_and_odd_contents_are_refused(tmp_path):
    path = tmp_path / "x.pkl"
    # a global of numpy outside the array-reconstruction allowlist (np.load could open other pickles)
    path.write_bytes(b"\x80\x02cnumpy\nload\nq\x00.")
    with pytest.raises(UnsafePickleError, match=r"numpy\.load"):
        read_pkl(path)
    path.write_bytes(pickle.dumps({"model": {"a": np.array([1, "x"], dtype=object)}}))
    with pytest.raises(ValueError, match="dtype 'O8' is not a plain numeric dtype"):
        read_pkl(path)  # an object array is refused at its dtype, before any of its items
    path.write_bytes(pickle.dumps({"model": {"a": [1.0, 2.0]}}))
    with pytest.raises(ValueError, match="weight 'a' is a list, expected a numpy array"):
        read_pkl(path)
    path.write_bytes(pickle.dumps({"model": {"a": np.zeros(3)}})[:-5])
    with pytest.raises(ValueError, match="not a readable detectron2 .pkl"):
        read_pkl(path)
    buf = io.BytesIO()
    pickle.dump({"model": {"a": np.float32(2.5)}}, buf)
    path.write_bytes(buf.getvalue())
    assert read_pkl(path)["a"].item() == 2.5
