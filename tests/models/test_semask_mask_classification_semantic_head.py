"""SeMask's semantic head of the detectron2 models: the prior maps summed with align_corners=True and upsampled ×4,
against an independent re-statement of the official ``SemanticHead`` (nn.Upsample chains), and its loss against
torch's cross-entropy on the full-size map with the labels padded by 255."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semask_models.mask_semantic_head import semantic_loss, semantic_prediction
from tests.utils import assert_close


def official_semantic_head(priors):
    """The official forward: stage i through i ×2 ``nn.Upsample(bilinear, align_corners=True)``, resized to stage 0
    (align_corners=True) and summed, then ×4 (align_corners=True)."""
    out = priors[0]
    for i in range(1, len(priors)):
        up = nn.Sequential(*[nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True) for _ in range(i)])
        out = out + F.interpolate(up(priors[i]), size=out.shape[2:], mode="bilinear", align_corners=True)
    h, w = out.shape[2:]
    return F.interpolate(out, (h * 4, w * 4), mode="bilinear", align_corners=True)


def _priors(h, w, k=6, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [(h, w)]
    for _ in range(3):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))  # PatchMerging pads odd sizes up
    return [torch.randn(batch, k, a, b, generator=g, dtype=torch.float64) for a, b in sizes]


@pytest.mark.parametrize("h,w", [(16, 16), (13, 22)])
def test_prediction_matches_the_official_head(h, w):
    priors = _priors(h, w)
    ours = semantic_prediction(priors, backend="reference")
    assert ours.shape == (2, 6, 4 * h, 4 * w)
    assert_close(ours, official_semantic_head(priors), torch.float64, "semantic prediction")


@pytest.mark.parametrize("h,w,H,W", [(16, 16, 64, 64), (13, 22, 50, 87)])
def test_loss_is_the_official_cross_entropy(h, w, H, W):
    priors = [p.requires_grad_() for p in _priors(h, w)]
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 6, (2, H, W), generator=g)
    target[0, :5] = 255
    ours = semantic_loss(priors, target, backend="reference")
    padded = F.pad(target, (0, 4 * w - W, 0, 4 * h - H), value=255)
    ref = F.cross_entropy(official_semantic_head(priors), padded, ignore_index=255)
    assert_close(ours, ref, torch.float64, "loss_cate")
    grads = torch.autograd.grad(ours, priors)
    ref_grads = torch.autograd.grad(ref, priors)
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        assert_close(a, b, torch.float64, f"grad of stage {i}")


def test_loss_refuses_labels_larger_than_the_priors():
    with pytest.raises(ValueError, match=r"target of size \(80, 64\) is larger than 4× the stride-4 prior maps"):
        semantic_loss(_priors(16, 16), torch.zeros(2, 80, 64, dtype=torch.long))
