"""patch_timm_swin on something that is not a module, or on a model without any timm Swin block, says so instead
of silently doing nothing."""
import logging

import pytest
import torch

import semask_kernels as sk

pytest.importorskip("timm")


def test_a_non_module_is_refused():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        sk.patch_timm_swin({"blocks": []})


def test_a_model_without_swin_blocks_warns_or_raises_with_strict(caplog):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with caplog.at_level(logging.WARNING, logger="semask_kernels"):
        assert sk.patch_timm_swin(model) is model
    assert "holds no timm SwinTransformerBlock" in caplog.text
    with pytest.raises(ValueError, match="Sequential holds no timm SwinTransformerBlock"):
        sk.patch_timm_swin(model, strict=True)
