"""After the attention, the patched timm block and this package's Swin block run add_layer_norm, linear_gelu and
linear_residual:
the same bits as stock timm on the torch path (eval, and training with drop path under the same seed), the
Triton backend within tolerance, stock code where the ops cannot keep the math (autocast, other MLPs)."""
import copy

import timm
import torch
from torch import nn

import semask_kernels as sk
from semask_kernels.nn import block_fusion as mr
from tests.utils import assert_close


def _stock(drop_path_rate=0.0):
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, window_size=4,
                             depths=(2,), num_heads=(2,), embed_dim=16, num_classes=3,
                             drop_path_rate=drop_path_rate)


def _count_op_calls(monkeypatch):
    calls = []
    for name in ("add_layer_norm", "linear_gelu", "linear_residual"):
        fn = getattr(mr, name)
        monkeypatch.setattr(mr, name, lambda *a, _fn=fn, _name=name, **k: calls.append(_name) or _fn(*a, **k))
    return calls


def test_patched_model_runs_the_ops_and_gives_stock_bits(monkeypatch):
    stock = _stock().eval()
    patched = sk.patch_timm_swin(copy.deepcopy(stock))
    calls = _count_op_calls(monkeypatch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(patched(x), stock(x))
    assert calls == ["add_layer_norm", "linear_gelu", "linear_residual"] * 2  # two blocks
    assert patched.state_dict().keys() == stock.state_dict().keys()


def test_training_with_drop_path_drops_the_same_samples_as_timm():
    stock = _stock(drop_path_rate=0.5).train()
    patched = sk.patch_timm_swin(copy.deepcopy(stock))
    x = torch.randn(6, 3, 32, 32)
    torch.manual_seed(1)
    expected = stock(x)
    torch.manual_seed(1)
    out = patched(x)
    assert torch.equal(out, expected)
    expected.square().sum().backward()
    out.square().sum().backward()
    for (name, a), b in zip(stock.named_parameters(), patched.parameters()):
        assert_close(b.grad, a.grad, name=name, scale=max(1.0, float(a.grad.abs().max())))


def test_triton_backend_matches_stock():
    stock = _stock().eval()
    patched = sk.patch_timm_swin(copy.deepcopy(stock), backend="triton")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close(patched(x), stock(x))


def test_autocast_and_other_mlps_and_norms_keep_the_stock_code():
    block = sk.patch_timm_swin(_stock()).layers[0].blocks[0]
    x = torch.randn(2, 64, 16)
    assert mr.mlp_branch_runs_ops(x, block.mlp, block.drop_path2, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not mr.mlp_branch_runs_ops(x, block.mlp, block.drop_path2, False)
    tanh = copy.deepcopy(block.mlp)
    tanh.act = nn.GELU(approximate="tanh")
    assert not mr.mlp_branch_runs_ops(x, tanh, block.drop_path2, False)
    dropping = copy.deepcopy(block.mlp)
    dropping.drop1.p = 0.1
    assert not mr.mlp_branch_runs_ops(x, dropping, block.drop_path2, True)
    assert mr.mlp_branch_runs_ops(x, dropping, block.drop_path2, False)  # dropout is the identity in eval
    assert not mr.mlp_branch_runs_ops(x.double(), block.mlp, block.drop_path2, False)
    assert mr.norm_runs_op(x, block.norm2)
    assert not mr.norm_runs_op(x, nn.LayerNorm(16, elementwise_affine=False))
    assert not mr.norm_runs_op(x, nn.RMSNorm(16))


def test_package_swin_block_runs_the_ops(monkeypatch):
    from semask_models.backbones.swin import SwinBlock
    torch.manual_seed(0)
    block = SwinBlock(16, 2, 4, 2, 4.0, True, 0.0, "auto").eval()
    x = torch.randn(2, 8, 8, 16)
    with torch.no_grad():
        y = x + block.attn(block.norm1(x))
        expected = y + block.mlp(block.norm2(y))
        calls = _count_op_calls(monkeypatch)
        assert torch.equal(block(x), expected)
    assert calls == ["add_layer_norm", "linear_gelu", "linear_residual"]
