"""The per-component profile of a Swin step: the classifier on op names and ranges, and the summary of a real
profiler run of a tiny timm Swin on the CPU (stock and patched)."""
import json

import pytest
import torch

from benchmarks import profile_swin as ps

BWD = "autograd::engine::evaluate_function: {}Backward0"


@pytest.mark.parametrize("name,ancestors,component", [
    ("aten::addmm", ["aten::linear", "component:attention"], "gemm"),   # qkv / proj Linear inside the attention
    ("aten::bmm", ["aten::matmul", "component:attention"], "attention_forward"),  # stock timm's q·kᵀ
    ("aten::_softmax", ["aten::softmax", "component:attention"], "attention_forward"),
    ("aten::index", [ps.SWA_FWD], "attention_forward"),
    ("aten::sum", [ps.SWA_BWD, BWD.format("ShiftedWindowAttention")], "attention_backward"),
    ("_bwd_kv_kernel", [ps.SWA_BWD], "attention_backward"),
    ("aten::cat", ["component:patch_merging"], "patch_merging"),
    ("aten::native_layer_norm", ["aten::layer_norm"], "layernorm"),
    ("aten::gelu", [], "gelu"),
    ("aten::add", [], "residual_add"),
    ("aten::roll", [], "layout"),
    ("aten::copy_", ["aten::contiguous"], "layout"),
    ("aten::mm", [BWD.format("Mm")], "gemm"),
    ("aten::mul", [BWD.format("Softmax")], "attention_backward"),
    ("aten::native_layer_norm_backward", [BWD.format("NativeLayerNorm")], "layernorm"),
    ("aten::gelu_backward", [BWD.format("Gelu")], "gelu"),
    ("aten::_foreach_add_", ["component:optimizer"], "optimizer"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32", [], "gemm"),
    ("aten::erfinv", [], "other"),
])
def test_classifier(name, ancestors, component):
    assert ps.classify(name, ancestors) == component


def _tiny():
    from timm.models.swin_transformer import SwinTransformer
    torch.manual_seed(0)
    return SwinTransformer(img_size=32, patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                           window_size=4, num_classes=10)


@pytest.mark.parametrize("patched", [False, True])
def test_profile_of_a_tiny_swin_step_covers_every_component(patched):
    import semask_kernels as sk
    model = _tiny()
    if patched:
        model = sk.patch_timm_swin(model, backend="auto")
    x = torch.randn(2, 3, 32, 32)
    infer = ps.profile_step(model, x, "inference", warmup=1)
    train = ps.profile_step(model, x, "train", warmup=1)
    assert set(infer) == set(train) == set(ps.COMPONENTS)
    for component in ("attention_forward", "gemm", "layernorm", "gelu", "residual_add", "patch_merging"):
        assert infer[component] > 0 and train[component] > 0, (component, infer, train)
    assert infer["attention_backward"] == infer["optimizer"] == 0
    assert train["attention_backward"] > 0 and train["optimizer"] > 0
    assert not [m for m in model.modules() if m._forward_pre_hooks]  # the ranges' hooks are gone afterwards
    rows = ps.rows({"device": "cpu"}, "tiny", "stock", "timm", "train", "fp32", 2, train)
    assert [r["component"] for r in rows] == list(ps.COMPONENTS)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    json.dumps(rows)
    with pytest.raises(ValueError, match="mode must be"):
        ps.profile_step(model, x, "eval")
