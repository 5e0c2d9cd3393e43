"""The zoo: parameter counts of the official README, meta-device builds, the official stage rule, end to end."""
import pytest
import torch

import semask_kernels as sk
import semask_models as sm
from tests.utils import assert_close

# Exact counts from the official layer list (background §1.6); the README rounds them to 35/56/96/211M.
SEMASK_FPN_PARAMS_K150 = {"t": 34.66e6, "s": 55.97e6, "b": 96.49e6, "l": 210.79e6}


@pytest.mark.parametrize("variant", "tsbl")
def test_semask_fpn_parameter_counts_on_meta(variant):
    with torch.device("meta"):
        model = sm.build_model(f"semask_swin_{variant}_fpn", num_classes=150)
    assert all(p.device.type == "meta" for p in model.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - SEMASK_FPN_PARAMS_K150[variant]) <= 0.02e6, count


def test_every_zoo_name_builds_on_meta():
    for name in sm.model_names():
        if "former" in name:
            continue  # mask-classification models: tests/models/test_semask_mask_classification.py
        with torch.device("meta"):
            model = sm.build_model(name, num_classes=19)
        has_semantic = any(isinstance(m, sk.nn.SemanticAttention) for m in model.modules())
        assert has_semantic == name.startswith("semask_"), name
    assert len([n for n in sm.model_names() if "swin_" in n]) == 48  # 4 variants × {semask_, plain} × 6 heads
    # (fpn, upernet, maskformer, mask2former, mask2former_fapn, mask2former_msfapn); the MiT family:
    # tests/models/test_mit_zoo.py


def _semantic_windows(model):
    return [layer.semantic_layer.window_size for layer in model.backbone.layers]


def test_official_window_rule():
    with torch.device("meta"):
        assert _semantic_windows(sm.build_model("semask_swin_t_fpn", 150)) == [7, 7, None, None]
        assert _semantic_windows(sm.build_model("semask_swin_l_fpn", 150)) == [12, 12, None, None]
        assert _semantic_windows(sm.build_model("semask_swin_b_fpn", 150)) == [12, 12, 12, 12]
        assert _semantic_windows(sm.build_model("semask_swin_t_fpn", 19)) == [7, 7, 7, 7]
        assert _semantic_windows(sm.build_model("semask_swin_t_fpn", 150, global_stages=(3,))) == [7, 7, 7, None]


def test_unknown_names_and_overrides_are_rejected():
    with pytest.raises(ValueError, match="unknown model 'semask_swin_x_fpn'"):
        sm.build_model("semask_swin_x_fpn")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['depth'\]"):
        sm.build_model("swin_t_fpn", depth=3)


def _tiny(name="semask_swin_t_fpn", **kw):
    kw = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, head_channels=16,
              drop_path_rate=0.0, **kw)
    return sm.build_model(name, num_classes=5, **kw)


@pytest.mark.parametrize("name", ["semask_swin_t_fpn", "swin_t_fpn", "semask_swin_t_upernet", "swin_t_upernet"])
def test_odd_input_size_end_to_end(name):
    model = _tiny(name).train()
    img = torch.randn(2, 3, 100, 132)
    target = torch.randint(0, 5, (2, 100, 132))
    target[:, :10] = 255
    losses = model(img, target)
    assert set(losses) == ({"loss", "loss_ce", "loss_cate"} if name.startswith("semask") else {"loss", "loss_ce"})
    losses["loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "gamma" not in n)
    model.eval()
    with torch.no_grad():
        assert model(img).shape == (2, 5, 100, 132)


def test_prior_branch_is_not_computed_at_inference(monkeypatch):
    model = _tiny().eval()
    calls = []
    monkeypatch.setattr(sk, "prior_map_decode", lambda *a, **k: calls.append(1))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert calls == []


def test_ohem_main_loss():
    model = _tiny(ohem_min_kept=50).train()
    img, target = torch.randn(1, 3, 64, 64), torch.randint(0, 5, (1, 64, 64))
    losses = model(img, target)
    assert torch.isfinite(losses["loss_ce"]) and losses["loss_ce"] > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = _tiny().train()
    ckpt = _tiny(use_checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    img, target = torch.randn(1, 3, 64, 64), torch.randint(0, 5, (1, 64, 64))
    for m in (plain, ckpt):
        torch.manual_seed(1)
        m(img, target)["loss"].backward()
    for (n, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        if a.grad is not None:
            assert_close(b.grad, a.grad, name=n)


@pytest.mark.parametrize("name", ["semask_swin_t_fpn", "swin_t_upernet"])
def test_reference_and_triton_backends_agree(name):
    """The same tiny model with every op on the reference and on Triton (interpreter on a CPU)."""
    table = sk.available_backends()
    missing = {op: table[op]["triton"][1] for op in ("shifted_window_attention", "semantic_attention",
                                                     "prior_map_decode", "upsample_cross_entropy")
               if not table[op]["triton"][0]}
    if missing:
        pytest.skip(f"Triton backends missing here: {missing}")
    torch.manual_seed(0)
    ref = _tiny(name, backend="reference").train()
    tri = _tiny(name, backend="triton").train()
    tri.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for layer in ref.backbone.layers:  # open the gamma gate so the semantic attention matters
            if layer.semantic_layer is not None:
                layer.semantic_layer.class_injection[0].gamma.fill_(0.5)
        for layer in tri.backbone.layers:
            if layer.semantic_layer is not None:
                layer.semantic_layer.class_injection[0].gamma.fill_(0.5)
    img, target = torch.randn(2, 3, 36, 44), torch.randint(0, 5, (2, 36, 44))  # PPM BN needs batch > 1
    results = []
    for m in (ref, tri):
        for mod in m.modules():  # dropout off, BN in train mode: deterministic and still a training step
            if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout2d)):
                mod.p = 0.0
        losses = m(img, target)
        losses["loss"].backward()
        results.append((losses, {n: p.grad for n, p in m.named_parameters()}))
    (l_ref, g_ref), (l_tri, g_tri) = results
    for k in l_ref:
        assert_close(l_tri[k], l_ref[k], name=k, scale=10)
    for n, g in g_ref.items():
        if g is not None:
            assert_close(g_tri[n], g, name=n, scale=10)
