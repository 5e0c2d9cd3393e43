"""torch.jit.trace of a patched timm Swin works as scripting does (it failed with ``unordered_map::at`` from the
torch path's cached layouts): the trace records the registered op and matches the eager model on another input of
the same shape, forward and input gradient, at a size that needs padding and shifted windows."""
import pytest
import torch

timm = pytest.importorskip("timm")
from timm.models.swin_transformer import SwinTransformer  # noqa: E402

import semask_kernels as sk  # noqa: E402
from tests.utils import assert_close  # noqa: E402


@pytest.mark.parametrize("level", ["block", "attention"])
def test_jit_trace_of_a_patched_timm_swin(level):
    torch.manual_seed(0)
    model = SwinTransformer(img_size=(44, 60), patch_size=4, embed_dim=8, depths=(2,), num_heads=(2,),
                            window_size=4, num_classes=3).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("qkv.bias"):
                p.normal_(0, 0.2)
    sk.patch_timm_swin(model, level=level)
    traced = torch.jit.trace(model, torch.randn(1, 3, 44, 60), check_trace=False)
    x = torch.randn(2, 3, 44, 60, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    expected, got = model(x), traced(x2)
    assert_close(got, expected, name="traced output")
    expected.sum().backward()
    got.sum().backward()
    assert_close(x2.grad, x.grad, name="traced input grad", scale=10)
