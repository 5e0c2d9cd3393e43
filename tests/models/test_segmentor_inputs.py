"""Bad input to a segmentor gets an error that says what is wrong (issue 15): the OHEM loss checks the labels as
the fused loss does (item 7); a 3-D image, a wrong channel count and batch 1 in train mode with BatchNorm are
named instead of failing deep inside torch (item 10)."""
import pytest
import torch
from semask_models.losses import ohem_loss
from semask_models.zoo import build_model

TINY = dict(num_classes=3, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2,
            head_channels=8)


@pytest.mark.parametrize("bad", [7, 3, -1])
def test_ohem_loss_names_a_label_out_of_range(bad):
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 16, 16))
    target[1, 5, 5] = bad
    with pytest.raises(ValueError, match=rf"label {bad}, outside \[0, 3\).*ignore_index=255"):
        ohem_loss(logits, target, min_kept=10)


def test_ohem_loss_accepts_ignored_pixels_and_checks_its_arguments():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 16, 16))
    target[:, :4] = 255
    assert torch.isfinite(ohem_loss(logits, target, min_kept=10))
    with pytest.raises(ValueError, match=r"min_kept must be an int >= 1 .*, got -5"):
        ohem_loss(logits, target, min_kept=-5)
    with pytest.raises(TypeError, match="integer dtype"):
        ohem_loss(logits, target.float(), min_kept=10)


def test_segmentor_with_ohem_names_the_bad_label():
    model = build_model("semask_swin_t_fpn", **TINY, ohem_min_kept=50)
    target = torch.randint(0, 3, (2, 32, 32))
    target[0, 0, 0] = 9
    with pytest.raises(ValueError, match="label 9"):
        model(torch.randn(2, 3, 32, 32), target)


def test_a_single_image_without_batch_dimension_is_named():
    model = build_model("semask_swin_t_fpn", **TINY).eval()
    with pytest.raises(ValueError, match=r"img must be a batch \(B, 3, H, W\).*\(3, 32, 32\).*img\[None\]"):
        model(torch.randn(3, 32, 32))


def test_a_wrong_channel_count_is_named():
    model = build_model("swin_t_upernet", **TINY).eval()
    with pytest.raises(ValueError, match=r"3-channel images, got shape \(2, 4, 32, 32\)"):
        model(torch.randn(2, 4, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"target must be \(B, H, W\) class indices with B = 2, got \(32, 32\)"):
        model.train()(torch.randn(2, 3, 32, 32), torch.zeros(32, 32, dtype=torch.long))


@pytest.mark.parametrize("name", ["semask_swin_t_fpn", "swin_t_upernet"])
def test_batch_one_in_train_mode_with_batchnorm_is_explained(name):
    model = build_model(name, **TINY).train()
    with pytest.raises(ValueError, match=r"batch size 1 in train mode.*BatchNorm.*model.eval\(\)"):
        model(torch.randn(1, 3, 32, 32), torch.randint(0, 3, (1, 32, 32)))
    model.eval()(torch.randn(1, 3, 32, 32))  # inference with batch 1 is fine
