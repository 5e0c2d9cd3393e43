"""MiT / SegFormer checkpoints in the official layout: ImageNet ``mit_b*.pth`` into the backbone, full
``segformer.b*.pth`` models with every key, strict shapes, safe loading only, and Swin checkpoints untouched."""
import pickle

import pytest
import torch

import semask_models as sm
from semask_models.checkpoints.training import CheckpointError
from semask_models.convert import load_checkpoint

TINY = dict(embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4), depths=(1, 2, 1, 1), head_channels=16,
            drop_path_rate=0.0)


def _model(name="mit_b0_segformer", k=4, **kw):
    return sm.build_model(name, k, **{**TINY, **kw}).eval()


def _randomized(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def test_full_official_segformer_checkpoint(tmp_path):
    src = _randomized(_model())
    sd = dict(src.state_dict())
    sd["decode_head.conv_seg.weight"] = torch.randn(4, 128, 1, 1)  # BaseDecodeHead's unused classifier
    sd["decode_head.conv_seg.bias"] = torch.randn(4)
    path = tmp_path / "segformer.b0.512x512.ade.160k.pth"
    torch.save({"meta": {"CLASSES": ["a", "b", "c", "d"]}, "state_dict": sd}, path)
    dst = _model()
    report = load_checkpoint(dst, path)
    assert report.source_format == "official_segformer"
    assert report.missing == [] and report.unexpected == [] and report.complete
    assert report.ignored == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    img = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        assert torch.equal(dst(img), src(img))


def test_imagenet_mit_backbone_checkpoint(tmp_path):
    src = _randomized(_model())
    sd = {k[len("backbone."):]: v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, 32), torch.randn(1000)
    path = tmp_path / "mit_b0.pth"
    torch.save(sd, path)
    dst = _model("semask_mit_b0_fpn")  # the backbone weights fit every head and the SeMask variant
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match="allow_partial"):  # partial: refused unless asked for
        load_checkpoint(dst, path)
    assert all(torch.equal(v, before[k]) for k, v in dst.state_dict().items())  # the model left as it was
    report = load_checkpoint(dst, path, allow_partial=True)  # an ImageNet backbone: partial by design
    assert report.source_format == "official_mit"
    assert report.unexpected == ["head.weight", "head.bias"]
    assert all(not k.startswith("backbone.") or ".semantic_layer" in k for k in report.missing)
    assert any(k.startswith("decode_head.") for k in report.missing)
    for k, v in sd.items():
        if not k.startswith("head."):
            assert torch.equal(dst.state_dict()["backbone." + k], v), k


def test_shape_mismatch_is_refused_naming_the_key(tmp_path):
    sd = _model().state_dict()
    with pytest.raises(ValueError, match=r"checkpoint key 'decode_head\.linear_c1\.proj\.weight' has shape"):
        load_checkpoint(_model(head_channels=24), sd)


def test_mit_checkpoint_into_a_swin_model_is_refused():
    swin = sm.build_model("swin_t_fpn", 4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                          window_size=4, head_channels=16)
    with pytest.raises(ValueError, match="needs a MiT model"):
        load_checkpoint(swin, _model().state_dict())


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickles_with_objects_are_refused(tmp_path):
    sd = dict(_model().state_dict())
    path = tmp_path / "mit_b0.pth"
    with open(path, "wb") as f:
        torch.save({"state_dict": sd, "evil": _Payload()}, f, pickle_module=pickle)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(_model(), path)


def test_hf_kv_halves_must_both_be_there():
    from semask_models.checkpoints.mit import hf_to_official, official_to_hf
    hub = official_to_hf(_model().state_dict())
    del hub["segformer.encoder.block.0.0.attention.self.value.weight"]
    with pytest.raises(ValueError, match="attn.kv.weight needs both"):
        hf_to_official(hub)
