"""A model patched by patch_timm_swin pickles, deep-copies and loads back, and the copy runs the fused path of
its own blocks (issue 15, item 3)."""
import copy
import io
import pickle

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock

import semask_kernels as sk
from semask_kernels.integrations._timm_block import FusedSwinTransformerBlock
from semask_kernels.nn import ShiftedWindowAttention


def _patched():
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, embed_dim=24,
                              depths=(1, 2), num_heads=(1, 2), window_size=4, num_classes=5).eval()
    return sk.patch_timm_swin(model, backend="reference")


def _roundtrips():
    yield "pickle", lambda m: pickle.loads(pickle.dumps(m))
    yield "deepcopy", copy.deepcopy

    def torch_save_load(m):
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=False)
    yield "torch.save", torch_save_load


@pytest.mark.parametrize("how, roundtrip", list(_roundtrips()), ids=lambda v: v if isinstance(v, str) else "")
def test_patched_model_survives(how, roundtrip):
    model = _patched()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    copy_ = roundtrip(model)
    assert torch.equal(copy_(x), expected)
    blocks = [m for m in copy_.modules() if isinstance(m, SwinTransformerBlock)]
    assert blocks and all(type(b) is FusedSwinTransformerBlock for b in blocks)
    assert all(isinstance(b.attn, ShiftedWindowAttention) for b in blocks)
    # each block of the copy calls its own attention, not the original model's
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    assert torch.equal(copy_(x), expected)
