"""Inference rules (whole, slide, multi-scale + flip) and the evaluation loop, with a per-pixel oracle model."""
import numpy as np
import torch
from PIL import Image
from semask_models.config import MEAN, STD, load_config
from semask_models.distributed import DistInfo
from semask_models.evaluate import evaluate, predict_scores, slide_logits
from torch import nn

K = 4


class ColorOracle(nn.Module):
    """Logits from the red channel: class k where red ≈ 60·k (a per-pixel model, any input size)."""
    align_corners = False

    def forward(self, img):
        centers = (torch.arange(K, dtype=torch.float32) * 60 - MEAN[0]) / STD[0]
        return -(img[:, :1] - centers.view(1, K, 1, 1)) ** 2 * 100


class Blocks(torch.utils.data.Dataset):
    """Images whose red channel encodes the label, in blocks; some pixels ignored."""
    num_classes, ignore_index = K, 255
    classes = ("a", "b", "c", "d")
    palette = [(10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120)]

    def __len__(self):
        return 3

    def __getitem__(self, i):
        h, w = 24 + 8 * i, 40
        label = torch.zeros(h, w, dtype=torch.uint8)
        label[:, 10:20], label[: h // 2, 20:] = 1, 2 + (i % 2)
        image = torch.stack([label * 60, torch.full_like(label, 7), torch.full_like(label, 99)])
        label[0, :5] = 255
        return {"image": image, "label": label, "name": f"blk{i}"}


def _cfg(*sets):
    return load_config("synthetic-tiny", ["test.scale=[40,40]", "data.num_workers=0", "train.progress=false",
                                          *sets])


def test_whole_inference_returns_scores_at_the_original_size():
    img = Blocks()[1]["image"]
    for scale in ([40, 40], [100, 80], [20, 10]):
        cfg = _cfg(f"test.scale={scale}")
        scores = predict_scores(ColorOracle(), img, cfg["test"], MEAN, STD, K)
        assert scores.shape == (K, 32, 40)


def test_slide_equals_whole_for_a_per_pixel_model():
    x = torch.randn(1, 3, 37, 53)
    whole = ColorOracle()(x)
    for crop, stride in (((16, 16), (10, 10)), ((40, 64), (8, 8)), ((37, 53), (5, 5))):
        assert torch.allclose(slide_logits(ColorOracle(), x, K, crop, stride), whole, atol=1e-5)


def test_aug_test_averages_probabilities_over_scales_and_flips():
    item = Blocks()[0]
    cfg = _cfg("test.aug=true")
    scores = predict_scores(ColorOracle(), item["image"], cfg["test"], MEAN, STD, K)
    assert scores.shape == (K, 24, 40)
    assert torch.allclose(scores.sum(0), torch.ones(24, 40), atol=1e-5)  # a mean of softmaxes
    calls = []

    class Spy(ColorOracle):
        def forward(self, img):
            calls.append(tuple(img.shape[-2:]))
            return super().forward(img)

    predict_scores(Spy(), item["image"], cfg["test"], MEAN, STD, K)
    assert len(calls) == 12 and len(set(calls)) == 6  # 6 ratios x 2 flips


def test_evaluate_oracle_gets_miou_one_and_saves_palette_pngs(tmp_path):
    metrics = evaluate(ColorOracle(), Blocks(), _cfg(), DistInfo(), progress=False, save_dir=tmp_path)
    assert metrics["mIoU"] == 1.0 and metrics["aAcc"] == 1.0 and metrics["num_images"] == 3
    assert set(metrics["IoU"]) == {"a", "b", "c", "d"}
    png = Image.open(tmp_path / "blk2.png")
    assert png.mode == "P" and png.getpalette()[:6] == [10, 20, 30, 40, 50, 60]
    arr = np.asarray(png)
    assert arr.shape == (40, 40) and arr[0, 0] == 255 and arr[0, 12] == 1 and arr[0, 30] == 2

    metrics = evaluate(ColorOracle(), Blocks(), _cfg("test.mode=slide", "test.crop=[16,16]", "test.stride=[12,12]"),
                       DistInfo(), progress=False)
    assert metrics["mIoU"] == 1.0 and metrics["mode"] == "slide"
