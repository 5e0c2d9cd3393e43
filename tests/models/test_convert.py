"""Checkpoint conversion: timm and official Swin ImageNet checkpoints give timm's features; SeMask-FPN
checkpoints round-trip; bad files are refused with clear errors."""
import logging

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer

import semask_models as sm
from semask_models import convert
from semask_models.backbones.swin import SwinBackbone
from tests.utils import assert_close

DIMS = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)


def _timm_swin():
    """A small timm Swin whose every stage map is a multiple of the window at 224, and which keeps the shift on
    the 7×7 last stage (always_partition) — where timm's and the official semantics coincide."""
    model = SwinTransformer(img_size=224, always_partition=True, drop_path_rate=0.0, num_classes=10, **DIMS).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("relative_position_bias_table") or n.endswith("qkv.bias"):
                p.normal_(0, 0.3)
    return model


def _timm_features(model, backbone, x):
    feats = model.forward_intermediates(x, norm=False, intermediates_only=True)  # NCHW stage outputs
    return [F.layer_norm(f.permute(0, 2, 3, 1), (f.shape[1],), getattr(backbone, f"norm{i}").weight,
                         getattr(backbone, f"norm{i}").bias).permute(0, 3, 1, 2) for i, f in enumerate(feats)]


def _official_layout(timm_sd):
    """The official Swin checkpoint layout: downsample at the end of the stage, persistent index and mask
    buffers, 'head' not 'head.fc', wrapped in {'model': ...}."""
    out = {}
    for k, v in timm_sd.items():
        parts = k.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        k = ".".join(parts).replace("head.fc.", "head.")
        out[k] = v
        if k.endswith("attn.relative_position_bias_table"):
            out[k.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(49, 49).long()
    out["layers.1.blocks.1.attn_mask"] = torch.zeros(16, 49, 49)
    return {"model": out}


@pytest.mark.parametrize("fmt", ["timm_safetensors", "timm_pth", "official_pth"])
def test_swin_checkpoints_give_timm_features(tmp_path, fmt):
    timm_model = _timm_swin()
    sd = timm_model.state_dict()
    if fmt == "timm_safetensors":
        path = tmp_path / "swin.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif fmt == "timm_pth":
        path = tmp_path / "swin.pth"
        torch.save(sd, path)
    else:
        path = tmp_path / "swin_official.pth"
        torch.save(_official_layout(sd), path)
    backbone = SwinBackbone(**DIMS, drop_path_rate=0.0).eval()
    report = convert.load_swin_backbone(backbone, path)
    assert report.source_format == ("official_swin" if fmt == "official_pth" else "timm_swin")
    assert all(k.startswith("norm") for k in report.missing)  # only the per-stage output norms are new
    assert "head.fc.weight" in report.unexpected or "head.weight" in report.unexpected
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours, _ = backbone(x)
        expected = _timm_features(timm_model, backbone, x)
    for i, (a, e) in enumerate(zip(ours, expected)):
        assert_close(a, e, name=f"stage {i}", scale=10)


def test_semask_fpn_checkpoint_round_trip_and_report(tmp_path, caplog):
    model = sm.build_model("semask_swin_t_fpn", num_classes=5, embed_dim=16, depths=(2, 2, 2, 2),
                           num_heads=(1, 2, 2, 4), head_channels=16).eval()
    path = tmp_path / "semask_fpn.pth"
    sd = model.state_dict()
    keys = set(sd)
    # the official mmseg key layout this model keeps
    for key in ["backbone.layers.0.semantic_layer.class_injection.0.mlp_cls_q.weight",
                "backbone.layers.0.semantic_layer.class_injection.0.gamma", "backbone.layers.0.semantic_layer.norm1.weight",
                "backbone.layers.0.downsample.reduction.weight", "backbone.norm3.weight",
                "decode_head.scale_heads.3.4.conv.weight", "decode_head.scale_heads.0.0.bn.running_var",
                "decode_head.conv_seg.weight", "backbone.layers.2.blocks.1.attn.relative_position_bias_table"]:
        assert key in keys, key
    torch.save({"state_dict": sd, "meta": {"CLASSES": ["a"] * 5}}, path)
    fresh = sm.build_model("semask_swin_t_fpn", num_classes=5, embed_dim=16, depths=(2, 2, 2, 2),
                           num_heads=(1, 2, 2, 4), head_channels=16).eval()
    with caplog.at_level(logging.INFO, logger="semask_models"):
        report = convert.load_checkpoint(fresh, path)
    assert report.missing == [] and report.unexpected == []
    assert "checkpoint format: segmentor" in caplog.text
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_window_7_table_is_resized_bicubically_for_window_12():
    timm_model = _timm_swin()
    backbone = SwinBackbone(**{**DIMS, "window_size": 12}, drop_path_rate=0.0)
    report = convert.load_swin_backbone(backbone, timm_model.state_dict())
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    assert key in report.resized
    old = timm_model.state_dict()[key]
    expected = F.interpolate(old.permute(1, 0).reshape(1, 1, 13, 13), size=(23, 23), mode="bicubic")
    assert torch.allclose(backbone.state_dict()[key], expected.reshape(1, 529).permute(1, 0))


def test_shape_mismatch_is_refused_naming_the_key():
    sd = _timm_swin().state_dict()
    sd["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="'layers.0.blocks.0.mlp.fc1.weight' has shape"):
        convert.load_swin_backbone(SwinBackbone(**DIMS), sd)


class NotATensor:
    pass


def test_pickles_that_need_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": NotATensor()}, path)
    with pytest.raises(ValueError, match="refusing to load .* run code from the file"):
        convert.read_state_dict(path)


def test_truncated_and_missing_files_get_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(_timm_swin().state_dict(), good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        convert.read_state_dict(bad)
    st = tmp_path / "bad.safetensors"
    st.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        convert.read_state_dict(st)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.read_state_dict(tmp_path / "nope.pth")
