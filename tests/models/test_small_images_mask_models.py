"""Mask-classification models with 32 head channels in 32 GroupNorm groups (both synthetic-tiny mask configs)
predict images of <= 32 px in eval mode: the 1x1 stride-32 map gives GroupNorm one value per group, which torch
refuses and ``layers.GroupNorm`` normalizes to 0 (the affine bias), as the formula does."""
import pytest
import torch
from torch import nn

import semask_models as sm
from semask_models.heads.maskformer.layers import GroupNorm
from tests.models.test_detectron2_checkpoint import TINY

MODELS = ["semask_swin_t_maskformer", "semask_swin_t_mask2former", "semask_swin_t_mask2former_fapn",
          "swin_t_mask2former_msfapn"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(32, 32), (17, 30), (8, 8)])
def test_eval_prediction_of_a_small_image(name, size):
    torch.manual_seed(0)
    model = sm.build_model(name, num_classes=5, **TINY).eval()
    assert any(isinstance(m, GroupNorm) for m in model.modules())
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *size) and torch.isfinite(out).all()


def test_group_norm_with_one_value_per_group_is_the_formula():
    torch.manual_seed(0)
    norm = GroupNorm(4, 4)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(3, 4, 1, 1, requires_grad=True)
    out = norm(x)
    # the formula, (x - mean) / sqrt(var + eps) * w + b with one value per group: mean = x, var = 0
    expected = ((x - x) / (0 + norm.eps) ** 0.5) * norm.weight.view(1, 4, 1, 1) + norm.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(out, expected)
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(norm.bias.grad, torch.full((4,), 3.0))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.GroupNorm(4, 4)(x[:1])  # what torch does without it (batch 1)
    y = torch.randn(2, 8, 3, 5)  # more than one value per group: nn.GroupNorm itself
    wide = GroupNorm(4, 8)
    torch.testing.assert_close(wide(y), nn.functional.group_norm(y, 4, wide.weight, wide.bias, wide.eps))
    assert list(wide.state_dict()) == list(nn.GroupNorm(4, 8).state_dict())
