"""The MiT family of the zoo: every name builds on the meta device, SegFormer's parameter counts, the SeMask-MiT
layout (semantic layer per stage, windowed 1-2 / global 3-4, gamma = 0), odd sizes end to end, the semantic layer's
gradients on MiT features, and the N_S field of both families."""
import pytest
import torch

import semask_kernels as sk
import semask_models as sm
from semask_models.backbones.semantic_layer import SemanticLayer
from semask_models.zoo.mit import names as mit_model_names

# SegFormer's README / paper (Table 1 + decoder) at 150 classes: 3.8M, 13.7M, 27.5M, 47.3M, 64.1M, 84.7M
SEGFORMER_PARAMS_M = {"b0": 3.8, "b1": 13.7, "b2": 27.5, "b3": 47.3, "b4": 64.1, "b5": 84.7}
TINY = dict(embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4), depths=(1, 2, 1, 1), head_channels=16,
            drop_path_rate=0.0, sem_window_size=4)


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", list(SEGFORMER_PARAMS_M))
def test_segformer_parameter_counts_on_meta(variant):
    with torch.device("meta"):
        model = sm.build_model(f"mit_{variant}_segformer", num_classes=150)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert round(_count(model) / 1e6, 1) == SEGFORMER_PARAMS_M[variant]


def test_every_mit_name_builds_on_meta():
    names = mit_model_names()
    assert len(names) == 24 and set(names) <= set(sm.model_names())
    for name in names:
        with torch.device("meta"):
            model = sm.build_model(name, num_classes=19)
        has_semantic = any(isinstance(m, sk.nn.SemanticAttention) for m in model.modules())
        assert has_semantic == name.startswith("semask_"), name
        if name.startswith("semask_"):  # one semantic layer per stage; the layers add little over plain MiT
            with torch.device("meta"):
                plain = sm.build_model(name[len("semask_"):], num_classes=19)
            extra = _count(model) - _count(plain)
            dims = model.backbone.num_features
            assert extra == sum(2 * (c * 19 + 19) + 2 * (c * c + c) + 1 + 2 * c for c in dims), name


def test_semantic_layout_of_semask_mit():
    with torch.device("meta"):
        model = sm.build_model("semask_mit_b2_segformer", 150)
    layers = [getattr(model.backbone, f"semantic_layer{i}") for i in range(1, 5)]
    assert [layer.window_size for layer in layers] == [8, 8, None, None]
    assert [len(layer.class_injection) for layer in layers] == [1, 1, 1, 1]
    assert model.decode_head.linear_fuse.conv.in_channels == 4 * 768
    model = sm.build_model("semask_mit_b0_fpn", 5, **TINY)
    assert all(getattr(model.backbone, f"semantic_layer{i}").class_injection[0].gamma.item() == 0 for i in
               range(1, 5))


@pytest.mark.parametrize("name", ["semask_mit_b0_segformer", "mit_b0_segformer", "semask_mit_b0_fpn",
                                  "mit_b0_fpn"])
def test_odd_input_size_end_to_end(name):
    torch.manual_seed(0)
    model = sm.build_model(name, 5, **TINY).train()
    img = torch.randn(2, 3, 67, 93)
    target = torch.randint(0, 5, (2, 67, 93))
    target[:, :7] = 255
    losses = model(img, target)
    assert set(losses) == ({"loss", "loss_ce", "loss_cate"} if name.startswith("semask") else {"loss", "loss_ce"})
    losses["loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "gamma" not in n and "mlp_res" not in n)
    model.eval()
    with torch.no_grad():
        assert model(img).shape == (2, 5, 67, 93)


def test_prior_loss_weight_is_applied():
    torch.manual_seed(0)
    model = sm.build_model("semask_mit_b0_segformer", 5, **TINY).train()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
            m.p = 0.0
    img, target = torch.randn(2, 3, 40, 40), torch.randint(0, 5, (2, 40, 40))
    torch.manual_seed(1)
    a = model(img, target)["loss_cate"]
    model.prior_weight = 0.8
    torch.manual_seed(1)
    b = model(img, target)["loss_cate"]
    assert torch.allclose(b, 2 * a) and a > 0


@pytest.mark.parametrize("window", [4, None])
def test_semantic_layer_gradcheck_on_mit_features(window):
    torch.manual_seed(0)
    backbone = sm.build_model("mit_b0_segformer", 3, **TINY).backbone.double()
    with torch.no_grad():
        feature = backbone(torch.randn(1, 3, 40, 44, dtype=torch.float64))[0][0]  # stage 1: (1, 8, 10, 11)
    layer = SemanticLayer(8, 3, window, backend="reference").double().eval()
    with torch.no_grad():
        layer.class_injection[0].gamma.fill_(0.7)
        layer.class_injection[0].mlp_res.weight.normal_(0, 0.3)
    x = feature.permute(0, 2, 3, 1).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x,), eps=1e-6, atol=1e-5)
    s_map, _ = layer(x)  # the prior map's gradient reaches the normed MiT feature
    s_map.sum().backward()
    assert x.grad.abs().sum() > 0


def test_sem_depths_for_both_families():
    with torch.device("meta"):
        mit = sm.build_model("semask_mit_b0_segformer", 150, sem_depths=(1, 2, 2, 2))
        swin = sm.build_model("semask_swin_t_fpn", 150, sem_depths=(2, 2, 2, 2))
    assert [len(getattr(mit.backbone, f"semantic_layer{i}").class_injection) for i in range(1, 5)] == [1, 2, 2, 2]
    assert [len(layer.semantic_layer.class_injection) for layer in swin.backbone.layers] == [2, 2, 2, 2]
    # the paper's appendix Table IV: SeMask-T FPN about 35M at N_S = 1 and about 37M at [1, 2, 2, 2] / [2, 2, 2, 2]
    with torch.device("meta"):
        counts = [_count(sm.build_model("semask_swin_t_fpn", 150, sem_depths=d)) / 1e6
                  for d in [(1, 1, 1, 1), (1, 2, 2, 2), (2, 2, 2, 2)]]
    assert round(counts[0]) == 35 and all(36.5 <= c <= 37.5 for c in counts[1:]), counts


def test_bad_mit_overrides_name_the_field():
    with pytest.raises(ValueError, match="sem_depths"):
        sm.build_model("semask_mit_b0_segformer", 5, sem_depths=(1, 1, 1))
    with pytest.raises(ValueError, match="num_heads"):
        sm.build_model("mit_b0_segformer", 5, num_heads=(1, 2, 3, 8))
    with pytest.raises(ValueError, match="global_stages"):
        sm.build_model("semask_mit_b0_segformer", 5, global_stages=(4,))
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['window_size'\]"):
        sm.build_model("mit_b0_segformer", 5, window_size=7)
    with pytest.raises(ValueError, match="sem_depths"):
        sm.build_model("semask_swin_t_fpn", 5, sem_depths=(1, 0, 1, 1))
    with pytest.raises(ValueError, match=r"sem_depths = \(1, 1\) is not allowed: expected one entry per stage"):
        sm.build_model("semask_swin_t_fpn", 5, sem_depths=(1, 1))


def test_too_small_input_is_a_clear_error():
    model = sm.build_model("mit_b0_segformer", 5, **TINY).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 29, 29))  # stage 1 is 8×8: the smallest size the reduction ratio 8 allows
        with pytest.raises(ValueError, match=r"img.*at least 29"):
            model(torch.randn(1, 3, 28, 64))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = sm.build_model("semask_mit_b0_segformer", 5, **TINY).train()
    ckpt = sm.build_model("semask_mit_b0_segformer", 5, use_checkpoint=True, **TINY).train()
    ckpt.load_state_dict(plain.state_dict())
    img, target = torch.randn(2, 3, 40, 40), torch.randint(0, 5, (2, 40, 40))
    grads = []
    for m in (plain, ckpt):
        torch.manual_seed(1)
        m(img, target)["loss"].backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for n, g in grads[0].items():
        assert torch.allclose(grads[1][n], g, atol=1e-6, rtol=1e-5), n


def test_reference_and_triton_backends_agree():
    """SeMask-MiT with the semantic attention, prior decoding and loss on the reference and on Triton (the
    interpreter on a CPU); windowed stages 1-2 and global 3-4 both run."""
    table = sk.available_backends()
    missing = {op: table[op]["triton"][1] for op in ("semantic_attention", "prior_map_decode",
                                                     "upsample_cross_entropy") if not table[op]["triton"][0]}
    if missing:
        pytest.skip(f"Triton backends missing here: {missing}")
    from tests.utils import assert_close
    torch.manual_seed(0)
    ref = sm.build_model("semask_mit_b0_segformer", 5, backend="reference", **TINY).train()
    tri = sm.build_model("semask_mit_b0_segformer", 5, backend="triton", **TINY).train()
    tri.load_state_dict(ref.state_dict())
    results = []
    for m in (ref, tri):
        with torch.no_grad():
            for i in range(1, 5):  # open the gamma gate so the semantic attention matters
                getattr(m.backbone, f"semantic_layer{i}").class_injection[0].gamma.fill_(0.5)
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout2d)):
                mod.p = 0.0
        img, target = torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(2)), \
            torch.randint(0, 5, (2, 32, 40), generator=torch.Generator().manual_seed(3))
        losses = m(img, target)
        losses["loss"].backward()
        results.append((losses, {n: p.grad for n, p in m.named_parameters()}))
    (l_ref, g_ref), (l_tri, g_tri) = results
    for k in l_ref:
        assert_close(l_tri[k], l_ref[k], name=k, scale=10)
    for n, g in g_ref.items():
        if g is not None:
            assert_close(g_tri[n], g, name=n, scale=10)
