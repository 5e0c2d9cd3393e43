"""patch_hf_swin on Hugging Face transformers Swin models and the models that embed them (issue 17): same modules,
parameters and state dict; outputs, every parameter gradient and the input gradient equal to stock transformers
within the tolerance policy, at sizes that need padding (60×76 input: 15×19, 8×10 and 4×5 maps, window 4)."""
import copy
import logging

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, MaskFormerConfig,  # noqa: E402
                          MaskFormerForInstanceSegmentation, SwinBackbone, SwinConfig, SwinForImageClassification,
                          SwinModel, UperNetConfig, UperNetForSemanticSegmentation)

import semask_kernels as sk  # noqa: E402
from semask_kernels.integrations._hf_layers import FusedMaskFormerSwinLayer, FusedSwinLayer  # noqa: E402
from tests.utils import assert_close  # noqa: E402

BACKENDS = ["auto", "reference", "triton"]
PADDED = (60, 76)
STAGES = ["stage1", "stage2", "stage3"]
PERTURBED = ("q_proj.bias", "k_proj.bias", "v_proj.bias", "query.bias", "key.bias", "value.bias",
             "relative_position_bias_table")


def _swin_config(**overrides):
    kw = dict(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[1, 2, 2], window_size=4,
              out_features=STAGES)
    return SwinConfig(**{**kw, **overrides})


def _pair(model):
    """The stock model (biases and tables made non-zero so padded tokens matter) and a patched deep copy."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(PERTURBED):
                p.normal_(0, 0.2)
    return model, copy.deepcopy(model)


def _patch(model, backend):
    keys, params = list(model.state_dict()), [id(p) for p in model.parameters()]
    sk.patch_hf_swin(model, backend=backend)
    assert list(model.state_dict()) == keys
    assert [id(p) for p in model.parameters()] == params
    fused = [m for m in model.modules() if isinstance(m, (FusedSwinLayer, FusedMaskFormerSwinLayer))]
    assert fused, "no layer was patched"
    return model


def _compare(stock, patched, outputs, size=PADDED, train=False, batch=2):
    """Outputs named by ``outputs(model(x))`` -> {name: tensor}; then every parameter and input gradient."""
    stock.train(train)
    patched.train(train)
    x = torch.randn(batch, 3, *size, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    expected, got = outputs(stock(x)), outputs(patched(x2))
    loss_e = loss_g = 0
    for name in expected:
        assert_close(got[name], expected[name], name=name, scale=10)
        g = torch.randn_like(expected[name])
        loss_e = loss_e + (expected[name] * g).sum()
        loss_g = loss_g + (got[name] * g).sum()
    loss_e.backward()
    loss_g.backward()
    stock_params = dict(stock.named_parameters())
    compared = 0
    for name, p in patched.named_parameters():
        ref = stock_params[name].grad
        if ref is None:
            assert p.grad is None or not p.grad.any(), f"{name}: gradient where stock has none"
            continue
        assert_close(p.grad, ref, name=f"grad {name}", scale=10)
        compared += 1
    assert compared and any("q_proj" in n or "query" in n for n, p in patched.named_parameters() if p.grad is not None)
    assert_close(x2.grad, x.grad, name="input grad", scale=10)


@pytest.mark.parametrize("backend, attn, size", [
    *[("auto", attn, size) for attn in ("sdpa", "eager") for size in (PADDED, (64, 64))],
    ("reference", "sdpa", PADDED), ("triton", "eager", PADDED)])  # the interpreter is slow: the padded case
def test_swin_model(backend, attn, size, monkeypatch):
    stock, patched = _pair(SwinModel(_swin_config(attn_implementation=attn)))
    _patch(patched, backend)
    from semask_kernels.ops.shifted_window_attention import torch_path

    runs, from_input = [], torch_path.from_input
    monkeypatch.setattr(torch_path, "from_input", lambda *a, **k: runs.append(1) or from_input(*a, **k))
    _compare(stock, patched, lambda o: {"last_hidden_state": o.last_hidden_state, "pooler": o.pooler_output},
             size=size)
    # on the CPU auto runs the plain path from the normed map (C channels gathered), once per layer
    assert len(runs) == (6 if backend == "auto" else 0)


def test_swin_for_image_classification_in_train_mode_with_drop_path():
    """Train mode: the same RNG stream gives the same drop path in both models. (Hidden dropout after the
    attention draws its mask over (B, H, W, C) instead of stock's padded windows: same distribution, another
    random stream, so it is not compared here.)"""
    config = _swin_config(drop_path_rate=0.2, num_labels=5)
    stock, patched = _pair(SwinForImageClassification(config))
    _patch(patched, "auto")
    torch.manual_seed(3)
    x = torch.randn(2, 3, *PADDED)
    stock.train(), patched.train()
    torch.manual_seed(1)
    expected = stock(x).logits
    torch.manual_seed(1)
    assert_close(patched(x).logits, expected, name="train-mode logits", scale=10)
    _compare(stock, patched, lambda o: {"logits": o.logits})


@pytest.mark.parametrize("backend", BACKENDS)
def test_swin_backbone_always_partitions(backend):
    """SwinBackbone never clips windows (always_partition): a 5×5 window over 15×19, 8×10 and 4×5 maps."""
    stock, patched = _pair(SwinBackbone(_swin_config(window_size=5)))
    _patch(patched, backend)
    _compare(stock, patched, lambda o: {s: f for s, f in zip(STAGES, o.feature_maps)})


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_upernet_with_swin_backbone(backend):
    config = UperNetConfig(backbone_config=_swin_config(), hidden_size=32, auxiliary_in_channels=64,
                           auxiliary_channels=16, num_labels=5)
    stock, patched = _pair(UperNetForSemanticSegmentation(config))
    _patch(patched, backend)
    _compare(stock, patched, lambda o: {"logits": o.logits}, batch=1)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_mask2former_with_swin_backbone(backend):
    config = Mask2FormerConfig(backbone_config=_swin_config(depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                                                            out_features=STAGES + ["stage4"]),
                               feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64,
                               dim_feedforward=64, decoder_layers=2, encoder_layers=1, num_queries=5, num_labels=3,
                               num_attention_heads=2)
    stock, patched = _pair(Mask2FormerForUniversalSegmentation(config))
    _patch(patched, backend)
    _compare(stock, patched, lambda o: {"masks": o.masks_queries_logits, "classes": o.class_queries_logits},
             batch=1)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_maskformer_swin_backbone(backend):
    decoder = dict(model_type="detr", d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
    config = MaskFormerConfig(backbone_config=_swin_config(depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                                                           out_features=STAGES + ["stage4"]),
                              fpn_feature_size=32, mask_feature_size=32, num_queries=5, num_labels=3,
                              decoder_config=decoder)
    stock, patched = _pair(MaskFormerForInstanceSegmentation(config))
    _patch(patched, backend)
    assert any(isinstance(m, FusedMaskFormerSwinLayer) for m in patched.modules())
    _compare(stock, patched, lambda o: {"masks": o.masks_queries_logits, "classes": o.class_queries_logits},
             batch=1)


def test_attention_weights_asked_for_come_from_the_stock_forward():
    stock, patched = _pair(SwinModel(_swin_config(attn_implementation="eager")))
    _patch(patched, "auto")
    x = torch.randn(1, 3, *PADDED)
    expected, got = stock(x, output_attentions=True), patched(x, output_attentions=True)
    assert len(got.attentions) == len(expected.attentions) == 3
    for a, e in zip(got.attentions, expected.attentions):
        assert_close(a, e, name="attention weights")
    assert_close(got.last_hidden_state, expected.last_hidden_state, name="last_hidden_state", scale=10)


def test_unsupported_layers_are_left_alone_with_a_reason(caplog):
    model = SwinModel(_swin_config(attention_probs_dropout_prob=0.1))
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_hf_swin(model)
    assert "attention dropout 0.1 > 0 is not supported" in caplog.text
    assert not any(isinstance(m, FusedSwinLayer) for m in model.modules())


def test_patching_twice_is_harmless_and_bad_backend_is_refused(caplog):
    model = sk.patch_hf_swin(SwinModel(_swin_config()))
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_hf_swin(model)
    assert "already patched" in caplog.text
    with pytest.raises(ValueError, match=r"backend must be one of .* got 'bogus'"):
        sk.patch_hf_swin(model, backend="bogus")


def test_state_dict_round_trip_between_stock_and_patched():
    stock, patched = _pair(SwinModel(_swin_config()))
    _patch(patched, "auto")
    fresh = sk.patch_hf_swin(SwinModel(_swin_config())).eval()
    fresh.load_state_dict(stock.state_dict())
    x = torch.randn(1, 3, *PADDED)
    assert_close(fresh(x).last_hidden_state, stock.eval()(x).last_hidden_state, name="loaded", scale=10)
