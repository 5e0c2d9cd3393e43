"""MiT backbone and MiT-SegFormer against independent code: Hugging Face transformers' Segformer (tests only).

Hugging Face's model is built with a fixed seed and every weight redrawn at a scale where mistakes show (BN
statistics included); its ``save_pretrained`` file (hub layout) loads into ours with no missing or unexpected key,
and ours written back in that layout loads into Hugging Face's; the logits agree on odd input sizes.
"""
import pytest
import torch
import torch.nn.functional as F

import semask_models as sm
from semask_models.checkpoints import mit as mit_checkpoint
from semask_models.checkpoints.training import CheckpointError
from semask_models.convert import load_checkpoint
from tests.utils import assert_close

transformers = pytest.importorskip("transformers")

# A narrow MiT with SegFormer's structure: reduction ratios 8/4/2/1, heads that split the widths, 2 blocks in a stage
TINY = dict(embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4), depths=(1, 2, 1, 1), head_channels=16,
            drop_path_rate=0.0)
K = 5


def _hf_model(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.SegformerConfig(hidden_sizes=list(TINY["embed_dims"]),
                                       num_attention_heads=list(TINY["num_heads"]), depths=list(TINY["depths"]),
                                       decoder_hidden_size=TINY["head_channels"], num_labels=K, drop_path_rate=0.0)
    model = transformers.SegformerForSemanticSegmentation(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.1) + (1.0 if "norm" in name and
                                                                              name.endswith("weight") else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return model


def _ours(name="mit_b0_segformer", **kw):
    return sm.build_model(name, K, **{**TINY, **kw}).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    _hf_model().save_pretrained(path)
    return path


def test_hub_file_loads_with_every_key(hf_dir):
    model = _ours()
    report = load_checkpoint(model, hf_dir / "model.safetensors")
    assert report.source_format == "hf_segformer"
    assert report.missing == [] and report.unexpected == [] and report.complete


@pytest.mark.parametrize("size", [(64, 64), (45, 61), (97, 33)])
def test_same_weights_same_features_and_logits(hf_dir, size):
    hf = transformers.SegformerForSemanticSegmentation.from_pretrained(hf_dir).eval()
    model = _ours()
    load_checkpoint(model, hf_dir / "model.safetensors")
    torch.manual_seed(1)
    img = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = hf(pixel_values=img, output_hidden_states=True)
        features, priors = model.backbone(img)
        logits = model(img)
    assert priors == []
    assert len(out.hidden_states) == 4
    for i, (f, h) in enumerate(zip(features, out.hidden_states)):
        assert_close(f, h, name=f"stage {i + 1}", scale=10)  # HF's block norms use eps 1e-5, the official 1e-6
    assert features[0].shape[-2:] == (-(-size[0] // 4), -(-size[1] // 4))
    expected = F.interpolate(out.logits, size=size, mode="bilinear", align_corners=False)
    assert_close(logits, expected, name="logits", scale=10)
    assert logits.abs().max() > 1.0  # weights at a scale where a wrong key or a wrong kv split would show


def test_ours_written_in_hub_layout_loads_into_hugging_face(tmp_path, hf_dir):
    torch.manual_seed(3)
    model = _ours()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    hf = transformers.SegformerForSemanticSegmentation.from_pretrained(hf_dir)  # for its config
    hf.config.save_pretrained(tmp_path)
    mit_checkpoint.save_hf_checkpoint(model, tmp_path / "model.safetensors")
    back = transformers.SegformerForSemanticSegmentation.from_pretrained(tmp_path).eval()
    img = torch.randn(1, 3, 53, 70)
    with torch.no_grad():
        expected = F.interpolate(back(pixel_values=img).logits, size=img.shape[-2:], mode="bilinear",
                                 align_corners=False)
        assert_close(model(img), expected, name="logits", scale=10)


def test_official_to_hf_and_back_is_the_identity():
    sd = _ours().state_dict()
    back, dropped = mit_checkpoint.hf_to_official(mit_checkpoint.official_to_hf(sd))
    assert dropped == [] and set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k


def test_hub_layout_refuses_semantic_layers():
    with pytest.raises(ValueError, match="no Hugging Face Segformer counterpart"):
        mit_checkpoint.official_to_hf(_ours("semask_mit_b0_segformer").state_dict())


def test_hf_imagenet_classifier_loads_into_the_backbone(tmp_path):
    """``nvidia/mit-b*`` style: SegformerForImageClassification (encoder + ``classifier``) as a ``pretrained``."""
    torch.manual_seed(4)
    cfg = transformers.SegformerConfig(hidden_sizes=list(TINY["embed_dims"]),
                                       num_attention_heads=list(TINY["num_heads"]), depths=list(TINY["depths"]),
                                       num_labels=7)
    hf = transformers.SegformerForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path)
    model = _ours("semask_mit_b0_segformer")
    with pytest.raises(CheckpointError, match="allow_partial"):  # a backbone into a segmentor: partial
        load_checkpoint(model, tmp_path / "model.safetensors")
    report = load_checkpoint(model, tmp_path / "model.safetensors", allow_partial=True)
    assert report.source_format == "hf_segformer"
    assert sorted(report.unexpected) == ["classifier.bias", "classifier.weight"]
    assert report.missing and all(k.startswith("decode_head.") or ".semantic_layer" in k for k in report.missing)
    plain = _ours()
    load_checkpoint(plain, tmp_path / "model.safetensors", allow_partial=True)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        hidden = hf.segformer(pixel_values=img, output_hidden_states=True).hidden_states
        features, _ = plain.backbone(img)
    assert_close(features[-1], hidden[-1], name="stage 4", scale=10)
