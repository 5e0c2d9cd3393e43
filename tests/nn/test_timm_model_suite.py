"""timm's own model tests (tests/test_models.py of timm: forward, backward, features_only, forward_intermediates,
TorchScript, torch.fx feature extraction), run on patched small Swin models and compared with the stock model
(issue 17). The installed timm ships no tests, so these are their equivalents, each also comparing numbers.

Sizes need padding in every stage (a 5×5 window over 16×16 and 8×8 maps), and the last stage's map is smaller
than the window (timm clips the window there). Backends: "auto" (the fast torch path on a CPU), "reference",
and "triton" (under the interpreter on a CPU).
"""
import copy

import pytest
import timm
import torch
from timm.layers import get_notrace_functions, get_notrace_modules, set_layer_config
from timm.models import FeatureGraphNet
from timm.models.swin_transformer import SwinTransformerBlock
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import semask_kernels as sk
from semask_kernels.integrations._timm_block import FusedSwinTransformerBlock
from semask_kernels.nn import ShiftedWindowAttention, WindowAttention
from tests.utils import assert_close

BACKENDS = ["auto", "reference", "triton"]
SMALL = dict(pretrained=False, img_size=64, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 2), window_size=5,
             num_classes=7, drop_path_rate=0.0)
VARIANTS = {  # timm's registered v1 variants, made small; swin_s3 keeps per-stage windows
    "swin_tiny": ("swin_tiny_patch4_window7_224", {}),
    "swin_s3": ("swin_s3_tiny_224", {"window_size": (5, 3, 4)}),
}
TRACER_KWARGS = {"leaf_modules": get_notrace_modules(), "autowrap_functions": get_notrace_functions()}


def _stock(variant="swin_tiny", scriptable=False, **overrides):
    name, extra = VARIANTS[variant]
    torch.manual_seed(0)
    with set_layer_config(scriptable=scriptable):
        model = timm.create_model(name, **{**SMALL, **extra, **overrides})
    with torch.no_grad():  # make the padded tokens' qkv bias and the tables matter
        for n, p in model.named_parameters():
            if n.endswith("qkv.bias") or n.endswith("relative_position_bias_table"):
                p.normal_(0, 0.2)
    return model


def _patched(stock, backend, level="block"):
    model = sk.patch_timm_swin(copy.deepcopy(stock), level=level, backend=backend)
    kind = ShiftedWindowAttention if level == "block" else WindowAttention
    blocks = [m for m in model.modules() if isinstance(m, SwinTransformerBlock)]
    assert blocks and all(isinstance(b.attn, kind) for b in blocks), "not every block was patched"
    return model


def _x(batch=2, grad=False):
    return torch.randn(batch, 3, 64, 64, requires_grad=grad)


def _assert_grads(patched, stock, scale=10.0):
    stock_grads = dict(stock.named_parameters())
    for name, p in patched.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert_close(p.grad, stock_grads[name].grad, name=f"grad {name}", scale=scale)


def _fx_model(model, train=False):
    """timm's test recipe: trace with timm's leaf modules and autowrapped functions, return the last node."""
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=TRACER_KWARGS)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=TRACER_KWARGS).train(train)


# ------------------------------------------------------------------------------------------ forward / backward

@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("level", ["block", "attention"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_forward(variant, level, backend):
    stock = _stock(variant).eval()
    patched = _patched(stock, backend, level).eval()
    x = _x()
    out = patched(x)
    assert out.shape == (2, 7) and not out.isnan().any()
    assert_close(out, stock(x), name="logits", scale=10)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_backward(variant, backend):
    """timm's backward test (train mode, every parameter gets a gradient), plus equal gradients."""
    stock = _stock(variant).train()
    patched = _patched(stock, backend).train()
    x = _x(grad=True)
    x2 = x.detach().clone().requires_grad_()
    stock(x).mean().backward()
    patched(x2).mean().backward()
    assert sum(p.grad.numel() for p in patched.parameters()) == sum(p.numel() for p in patched.parameters())
    _assert_grads(patched, stock)
    assert_close(x2.grad, x.grad, name="input grad", scale=10)


# --------------------------------------------------------------------------------- features and intermediates

@pytest.mark.parametrize("backend", BACKENDS)
def test_model_forward_features(backend):
    """features_only=True (timm's FeatureListNet over layers.*): channels, batch, reductions and values."""
    stock = _stock(features_only=True).eval()
    patched = _patched(stock, backend).eval()
    x = _x()
    expected, got = stock(x), patched(x)
    channels, reductions = patched.feature_info.channels(), patched.feature_info.reduction()
    assert len(got) == len(channels) == 3
    for c, r, e, o in zip(channels, reductions, expected, got):
        assert o.shape == (2, 64 // r, 64 // r, c)  # timm's Swin features are NHWC
        assert_close(o, e, name=f"feature at reduction {r}", scale=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_forward_intermediates(backend):
    stock = _stock().eval()
    patched = _patched(stock, backend).eval()
    x = _x()
    final, inter = patched.forward_intermediates(x)
    stock_final, stock_inter = stock.forward_intermediates(x)
    assert_close(final, patched.forward_features(x), name="final vs forward_features")
    assert_close(final, stock_final, name="final", scale=10)
    for info, o, e in zip(patched.feature_info, inter, stock_inter):
        assert o.shape == (2, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])  # NCHW
        assert_close(o, e, name=f"intermediate {info['module']}", scale=10)
    only = patched.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
    assert len(only) == 2
    assert_close(only[1], inter[2], name="intermediates_only")


# ------------------------------------------------------------------------------------------------- TorchScript

@pytest.mark.parametrize("level", ["block", "attention"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_forward_torchscript(level, backend):
    """timm's TorchScript test (set_scriptable, torch.jit.script), with outputs and gradients equal to stock;
    the scripted graph calls the registered op (the fused path), not a fallback."""
    stock = _stock(scriptable=True).eval()
    patched = _patched(stock, backend, level).eval()
    scripted = torch.jit.script(patched)
    op = "shifted_window_attention" if level == "block" else "window_attention"
    assert str(scripted.inlined_graph).count(f"semask_kernels::{op}(") == 6
    x = _x()
    out = scripted(x)
    assert out.shape == (2, 7) and not out.isnan().any()
    assert_close(out, stock(x), name="scripted logits", scale=10)
    out.square().mean().backward()
    stock(x).square().mean().backward()
    _assert_grads(patched, stock)  # the scripted module shares the patched model's parameters


def test_torchscript_model_saves_and_loads(tmp_path):
    stock = _stock(scriptable=True).eval()
    scripted = torch.jit.script(_patched(stock, "auto"))
    scripted.save(str(tmp_path / "swin.pt"))
    x = _x()
    assert_close(torch.jit.load(str(tmp_path / "swin.pt"))(x), stock(x), name="loaded logits", scale=10)


# -------------------------------------------------------------------------------------------------------- FX

@pytest.mark.parametrize("level", ["block", "attention"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_forward_fx(level, backend):
    """timm's FX test: torchvision's create_feature_extractor with timm's tracer settings, eval graph; the op is
    one leaf node per block; the traced graph also scripts (timm's FX + TorchScript test)."""
    stock = _stock().eval()
    patched = _patched(stock, backend, level).eval()
    fx_model = _fx_model(patched)
    leaves = [n for n in fx_model.graph.nodes if n.op == "call_function" and n.target.__name__ == "_attend"]
    assert len(leaves) == 6
    x = _x()
    expected = stock(x)
    with torch.inference_mode():
        (out,) = fx_model(x).values()
    assert_close(out, expected, name="fx logits", scale=10)
    (scripted_out,) = torch.jit.script(fx_model)(x).values()
    assert_close(scripted_out, expected, name="fx + TorchScript logits", scale=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_backward_fx(backend):
    stock = _stock().train()
    patched = _patched(stock, backend).train()
    fx_model = _fx_model(patched, train=True)
    x = _x()
    (out,) = fx_model(x).values()
    out.mean().backward()
    stock(x).mean().backward()
    _assert_grads(patched, stock)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_fx_feature_extraction(backend):
    """timm's FeatureGraphNet and torchvision's create_feature_extractor on named stage outputs."""
    stock = _stock().eval()
    patched = _patched(stock, backend).eval()
    x = _x()
    expected = stock.forward_intermediates(x, intermediates_only=True)  # NCHW
    got = FeatureGraphNet(patched, out_indices=(0, 1, 2))(x)
    assert len(got) == 3
    for i, (o, e) in enumerate(zip(got, expected)):
        assert_close(o.permute(0, 3, 1, 2), e, name=f"FeatureGraphNet stage {i}", scale=10)  # NHWC from timm
    tv = create_feature_extractor(patched, {"layers.1": "s1", "norm": "final"}, tracer_kwargs=TRACER_KWARGS)
    feats = tv(x)
    assert_close(feats["s1"].permute(0, 3, 1, 2), expected[1], name="torchvision extractor stage 1", scale=10)
    assert_close(feats["final"], stock.forward_features(x), name="torchvision extractor final", scale=10)


def test_plain_symbolic_trace_and_torch_export():
    """``torch.fx.symbolic_trace`` (no timm settings) and ``torch.export`` of a patched model, at a size that
    needs a dynamically built shift mask in stock timm (strict_img_size=False)."""
    stock = _stock(strict_img_size=False).eval()
    patched = _patched(stock, "auto").eval()
    x = torch.randn(1, 3, 60, 76)
    expected = stock(x)
    assert_close(torch.fx.symbolic_trace(patched)(x), expected, name="symbolic_trace logits", scale=10)
    exported = torch.export.export(patched, (x,))
    assert_close(exported.module()(x), expected, name="exported logits", scale=10)


def test_patched_blocks_are_timm_blocks_and_subclasses_are_left_alone(caplog):
    model = _patched(_stock(), "auto")
    blocks = [m for m in model.modules() if isinstance(m, SwinTransformerBlock)]
    assert all(type(b) is FusedSwinTransformerBlock for b in blocks)

    class MyBlock(SwinTransformerBlock):
        pass

    other = _stock()
    other.layers[0].blocks[0].__class__ = MyBlock
    with caplog.at_level("WARNING", logger="semask_kernels"):
        sk.patch_timm_swin(other)
    assert "block is MyBlock, a subclass of timm's SwinTransformerBlock" in caplog.text
    assert type(other.layers[0].blocks[0].attn).__module__.startswith("timm")
    assert isinstance(other.layers[0].blocks[1].attn, ShiftedWindowAttention)
