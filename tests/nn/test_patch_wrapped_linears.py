"""patch_hf_swin and patch_timm_swin never bypass what wraps, subclasses or hooks the q, k, v Linears (or the other
modules whose forward the fused path skips): a peft LoRA adapter (either patch order, and LoRA training), forward,
pre-forward and backward hooks, a Linear subclass, a global module hook. Each patched model must give the stock
model's outputs and gradients with the same wrappers, at a size that needs padding (the padded tokens' q, k, v go
through the wrapper too)."""
import copy
import logging

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
timm = pytest.importorskip("timm")
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from transformers import MaskFormerSwinConfig, MaskFormerSwinModel, SwinConfig, SwinModel  # noqa: E402

import semask_kernels as sk  # noqa: E402
from semask_kernels.integrations._hf_layers import FusedSwinLayer, bypassed  # noqa: E402
from tests.utils import assert_close  # noqa: E402

PADDED = (28, 36)  # 7x9 map, window 4: padded windows, and a shifted second layer
# timm: an 11x15 map (padded by one row and column). timm's precomputed shift mask places the region borders on the
# padded grid, which this package's roll_then_pad reproduces only while the padding is narrower than the shift
TIMM_SIZE = (44, 60)


def _perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("bias", "relative_position_bias_table")):
                p.normal_(0, 0.2)
    return model


def _hf(maskformer=False):
    kw = dict(image_size=32, patch_size=4, embed_dim=8, depths=[2], num_heads=[2], window_size=4)
    if maskformer:
        return _perturbed(MaskFormerSwinModel(MaskFormerSwinConfig(**kw)))
    return _perturbed(SwinModel(SwinConfig(**kw)))


def _timm():
    return _perturbed(SwinTransformer(img_size=TIMM_SIZE, patch_size=4, embed_dim=8, depths=(2,), num_heads=(2,),
                                      window_size=4, strict_img_size=False, num_classes=3))


def _size(model):
    return TIMM_SIZE if isinstance(model, SwinTransformer) or "SwinTransformer" in str(type(getattr(
        getattr(model, "base_model", None), "model", None))) else PADDED


def _out(model, x):
    out = model(x)
    if isinstance(out, torch.Tensor):
        return out
    return out.last_hidden_state


def _same(stock, patched, grads=True):
    """Same output and (with ``grads``) the same gradient of every trainable parameter and of the input."""
    torch.manual_seed(5)
    x = torch.randn(1, 3, *_size(stock), requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    expected, got = _out(stock, x), _out(patched, x2)
    assert_close(got, expected, name="output", scale=10)
    if not grads:
        return expected
    g = torch.randn_like(expected)
    (expected * g).sum().backward()
    (got * g).sum().backward()
    ref = dict(stock.named_parameters())
    compared = 0
    for name, p in patched.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient (bypassed?)"
            assert_close(p.grad, ref[name].grad, name=f"grad {name}", scale=10)
            compared += 1
    assert compared
    assert_close(x2.grad, x.grad, name="input grad", scale=10)
    return expected


# ------------------------------------------------------------------------------------------------- peft LoRA

def _lora(model, targets):
    torch.manual_seed(11)
    return peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets, init_lora_weights=False))


@pytest.mark.parametrize("order", ["patch_then_lora", "lora_then_patch"])
@pytest.mark.parametrize("family", ["hf", "hf_maskformer", "timm"])
def test_lora_adapter_is_applied_and_trains(family, order, caplog):
    base = _hf() if family == "hf" else _hf(True) if family == "hf_maskformer" else _timm()
    targets = {"hf": ["q_proj", "v_proj"], "hf_maskformer": ["query", "value"], "timm": ["qkv"]}[family]
    patch = sk.patch_timm_swin if family == "timm" else sk.patch_hf_swin
    plain = copy.deepcopy(base)
    stock = _lora(copy.deepcopy(base), targets)
    if order == "patch_then_lora":
        patched = _lora(patch(copy.deepcopy(base), backend="auto"), targets)
    else:
        with caplog.at_level(logging.WARNING, logger="semask_kernels"):
            patched = patch(_lora(copy.deepcopy(base), targets), backend="auto")
    patched.load_state_dict(stock.state_dict())
    expected = _same(stock, patched)  # LoRA weights train: every lora_A/lora_B has a gradient equal to stock's
    assert any("lora_" in n for n, p in patched.named_parameters() if p.requires_grad)
    torch.manual_seed(5)  # _same's input
    with torch.no_grad():
        without = _out(plain, torch.randn(1, 3, *_size(plain)))
    assert (expected.detach() - without).abs().max() > 1e-3, "the adapter changes nothing: the test is vacuous"


# ------------------------------------------------------------------------------------------------------ hooks

def _edit(out):
    """A hook's edit of a module output (a tensor, or a tuple whose first item is one)."""
    if isinstance(out, tuple):
        return (out[0] * 1.5 + 0.25, *out[1:])
    return out * 1.5 + 0.25


def _add_hook(module, kind, calls):
    if kind == "forward":
        return module.register_forward_hook(lambda m, i, o: calls.append(1) or _edit(o))
    if kind == "forward_pre":  # halves the first input (the position-bias module takes none: counted only)
        return module.register_forward_pre_hook(lambda m, i: calls.append(1) or ((i[0] * 0.5, *i[1:]) if i else None))
    return module.register_full_backward_hook(lambda m, gi, go: calls.append(1) or None)


HF_TARGETS = {"hf": ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.relative_position_bias",
                     "attention"],
              "hf_maskformer": ["attention.self.query", "attention.self.value", "attention.self", "attention"]}


@pytest.mark.parametrize("when", ["before_patch", "after_patch"])
@pytest.mark.parametrize("kind", ["forward", "forward_pre", "backward"])
@pytest.mark.parametrize("family, target", [(f, t) for f, ts in HF_TARGETS.items() for t in ts])
def test_hf_hooks_are_called(family, target, kind, when):
    stock = _hf(family == "hf_maskformer")
    patched = copy.deepcopy(stock)
    if when == "after_patch":
        sk.patch_hf_swin(patched)
    stock_calls, calls = [], []
    for model, log in ((stock, stock_calls), (patched, calls)):
        for layer in model.encoder.layers[0].blocks:
            _add_hook(layer.get_submodule(target), kind, log)
    if when == "before_patch":
        sk.patch_hf_swin(patched)
    _same(stock, patched)
    assert stock_calls and len(calls) == len(stock_calls)


@pytest.mark.parametrize("kind", ["forward", "forward_pre", "backward"])
def test_hf_global_module_hook_is_called(kind):
    stock = _hf()
    patched = sk.patch_hf_swin(copy.deepcopy(stock))
    seen = []
    register = {"forward": nn.modules.module.register_module_forward_hook,
                "forward_pre": nn.modules.module.register_module_forward_pre_hook,
                "backward": nn.modules.module.register_module_full_backward_hook}[kind]
    handle = register(lambda m, *a: seen.append(type(m).__name__) or None)
    try:
        x = torch.randn(1, 3, *PADDED, requires_grad=True)
        _out(stock, x).sum().backward()
        stock_seen, seen[:] = list(seen), []
        _out(patched, x).sum().backward()
    finally:
        handle.remove()
    assert seen.count("Linear") == stock_seen.count("Linear") > 0


class _Doubling(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x) - 0.1


def _subclassed(linear):
    new = _Doubling(linear.in_features, linear.out_features, bias=linear.bias is not None)
    new.load_state_dict(linear.state_dict())
    return new


@pytest.mark.parametrize("family, name", [("hf", "q_proj"), ("hf", "v_proj"), ("hf_maskformer", "key")])
@pytest.mark.parametrize("when", ["before_patch", "after_patch"])
def test_hf_linear_subclass(family, name, when):
    stock = _hf(family == "hf_maskformer")
    patched = copy.deepcopy(stock)
    if when == "after_patch":
        sk.patch_hf_swin(patched)
    for model in (stock, patched):
        for layer in model.encoder.layers[0].blocks:
            attn = layer.attention if family == "hf" else layer.attention.self
            setattr(attn, name, _subclassed(getattr(attn, name)))
    if when == "before_patch":
        sk.patch_hf_swin(patched)
    _same(stock, patched)


def test_hf_parametrized_weight():
    stock = _hf()
    patched = sk.patch_hf_swin(copy.deepcopy(stock))

    class Half(nn.Module):
        def forward(self, w):
            return w * 0.5

    for model in (stock, patched):
        for layer in model.encoder.layers[0].blocks:
            nn.utils.parametrize.register_parametrization(layer.attention.k_proj, "weight", Half())
    _same(stock, patched)


def test_hf_plain_layers_stay_fused_and_a_removed_hook_restores_the_fused_path(monkeypatch, caplog):
    model = sk.patch_hf_swin(_hf())
    layers = list(model.encoder.layers[0].blocks)
    assert all(isinstance(layer, FusedSwinLayer) and bypassed(layer) is None for layer in layers)
    stock_forward = []

    def stock(self, *args, **kwargs):
        stock_forward.append(1)
        raise ZeroDivisionError("the stock forward ran")

    monkeypatch.setattr(transformers.models.swin.modeling_swin.SwinLayer, "forward", stock)
    model(torch.randn(1, 3, *PADDED))
    assert not stock_forward  # the fused path, not the stock forward
    handle = layers[0].attention.q_proj.register_forward_hook(lambda m, i, o: None)
    assert "forward hooks" in bypassed(layers[0])
    with caplog.at_level(logging.WARNING, logger="semask_kernels"), pytest.raises(ZeroDivisionError):
        model(torch.randn(1, 3, *PADDED))
    assert "runs its stock forward" in caplog.text and "attention.q_proj" in caplog.text
    handle.remove()
    model(torch.randn(1, 3, *PADDED))
    assert len(stock_forward) == 1


# ------------------------------------------------------------------------------------------------------ timm

@pytest.mark.parametrize("level", ["block", "attention"])
@pytest.mark.parametrize("kind", ["forward", "forward_pre", "backward", "subclass"])
@pytest.mark.parametrize("when", ["before_patch", "after_patch"])
def test_timm_hooked_or_subclassed_qkv(level, kind, when):
    stock = _timm()
    patched = copy.deepcopy(stock)
    if when == "after_patch":
        sk.patch_timm_swin(patched, level=level)
    stock_calls, calls = [], []
    for model, log in ((stock, stock_calls), (patched, calls)):
        for block in model.layers[0].blocks:
            if kind == "subclass":
                block.attn.qkv = _subclassed(block.attn.qkv)
            else:
                _add_hook(block.attn.qkv, kind, log)
    if when == "before_patch":
        sk.patch_timm_swin(patched, level=level)
    _same(stock, patched)
    assert len(calls) >= len(stock_calls)  # the padded tokens' q, k, v may come from one more call on zeros


@pytest.mark.parametrize("target", ["", "softmax"])
def test_timm_hook_on_a_replaced_module_leaves_the_block_alone(target, caplog):
    stock = _timm()
    patched = copy.deepcopy(stock)
    for model in (stock, patched):
        for block in model.layers[0].blocks:
            block.attn.get_submodule(target).register_forward_hook(lambda m, i, o: o * 0.5)
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_timm_swin(patched)
    assert "has hooks" in caplog.text
    _same(stock, patched)


# ------------------------------------------------------------------------------------- nothing to patch, bad input

def test_patch_hf_swin_strict_and_bad_model(caplog):
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        sk.patch_hf_swin(nn.Linear(2, 2))
    assert "nothing was patched" in caplog.text
    with pytest.raises(ValueError, match="holds no transformers SwinLayer"):
        sk.patch_hf_swin(nn.Linear(2, 2), strict=True)
    sk.patch_hf_swin(_hf(), strict=True)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        sk.patch_hf_swin("microsoft/swin-tiny-patch4-window7-224")
