"""The official (mmseg) training augmentation as torchvision.transforms.v2 transforms on
``tv_tensors.Image`` (uint8 (3, H, W)) and ``tv_tensors.Mask`` ((H, W)).

Order and semantics of mmseg 0.11 as used by SeMask-FPN: keep-ratio resize with a ratio drawn from a list
(``random.choice``) or a range (uniform) of a base scale; random crop with ``cat_max_ratio`` (up to 10 retries
until no single class, ignore excluded, covers ``cat_max_ratio`` or more of the crop); horizontal flip;
photometric distortion; normalization; padding to the crop size (image 0, label 255).

The randomness comes from torch's global generator; :class:`~semask_models.data.loader.AugmentedDataset` seeds
it per sample from (seed, epoch, index), so an augmentation is a pure function of those and resume reproduces it.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode


def rescale_size(hw: tuple[int, int], scale: Sequence[float]) -> tuple[int, int]:
    """mmcv ``rescale_size``: the largest keep-ratio size whose long edge ≤ max(scale) and short edge ≤
    min(scale); returns (h, w)."""
    h, w = hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def resize_pair(x, size: tuple[int, int]):
    """Bilinear (no antialias, as cv2) for images, nearest for masks."""
    if isinstance(x, tv_tensors.Mask):
        return F.resize(x, list(size), interpolation=InterpolationMode.NEAREST)
    if tuple(size) == (1, 1) and x.dtype == torch.uint8:  # torch's uint8 bilinear kernel asserts on a 1×1 output
        out = F.resize(x.float(), [1, 1], interpolation=InterpolationMode.BILINEAR, antialias=False)
        out = out.round().clamp(0, 255).to(torch.uint8)
        return tv_tensors.wrap(out, like=x) if isinstance(x, tv_tensors.TVTensor) else out
    return F.resize(x, list(size), interpolation=InterpolationMode.BILINEAR, antialias=False)


def _find(flat_inputs, kind):
    for x in flat_inputs:
        if isinstance(x, kind):
            return x
    return None


class RandomRescale(T.Transform):
    """mmseg ``Resize(img_scale=scale, ratio_range=..., keep_ratio=True)``: draw a ratio (from ``ratios`` with
    equal probability, or uniformly in ``ratio_range``), then resize keeping the aspect ratio so that the image fits
    ``(max(scale)·r, min(scale)·r)``."""

    def __init__(self, scale: Sequence[int], ratios: Optional[Sequence[float]] = None,
                 ratio_range: Optional[Sequence[float]] = None):
        super().__init__()
        if (ratios is None) == (ratio_range is None):
            raise ValueError("give exactly one of ratios (a list) or ratio_range ([lo, hi])")
        self.scale, self.ratios, self.ratio_range = tuple(scale), ratios, ratio_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if self.ratios is not None:
            ratio = float(self.ratios[int(torch.randint(len(self.ratios), ()))])
        else:
            lo, hi = self.ratio_range
            ratio = lo + (hi - lo) * float(torch.rand(()))
        h, w = _find(flat_inputs, tv_tensors.Image).shape[-2:]
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))  # mmseg truncates here
        return {"size": rescale_size((h, w), scale)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_pair(inpt, params["size"])


class RandomCropCatMax(T.Transform):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio, ignore_index)``: a random window of at most ``crop``; when
    ``cat_max_ratio < 1`` it is drawn again (up to 10 times) while a single class covers ``cat_max_ratio`` or more
    of the non-ignored pixels of the window, or fewer than two classes are present."""

    def __init__(self, crop: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255):
        super().__init__()
        self.crop, self.cat_max_ratio, self.ignore_index = tuple(crop), cat_max_ratio, ignore_index

    def _bbox(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = self.crop
        top = int(torch.randint(max(h - ch, 0) + 1, ()))
        left = int(torch.randint(max(w - cw, 0) + 1, ()))
        return top, left, min(ch, h), min(cw, w)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _find(flat_inputs, tv_tensors.Image).shape[-2:]
        bbox = self._bbox(h, w)
        mask = _find(flat_inputs, tv_tensors.Mask)
        if self.cat_max_ratio < 1.0 and mask is not None:
            for _ in range(10):
                top, left, ch, cw = bbox
                window = mask[..., top:top + ch, left:left + cw].reshape(-1)
                window = window[window != self.ignore_index]
                counts = torch.bincount(window.long())
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                bbox = self._bbox(h, w)
        return {"bbox": bbox}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        top, left, ch, cw = params["bbox"]
        return F.crop(inpt, top, left, ch, cw)


def rgb_to_hsv(img: Tensor) -> Tensor:
    """float RGB (3, H, W) in [0, 255] → HSV with h in [0, 1), s in [0, 1], v in [0, 255]."""
    r, g, b = img.unbind(0)
    maxc, _ = img.max(0)
    minc, _ = img.min(0)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc])


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(0)
    h6 = (h % 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = torch.stack([torch.stack(c) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return torch.gather(choices, 0, i.expand(1, 3, *i.shape)).squeeze(0)


class PhotoMetricDistortion(T.Transform):
    """mmseg ``PhotoMetricDistortion`` with its defaults, on the image only; each step applies with
    probability 1/2, saturating to uint8 after each as mmseg does: brightness + U(−32, 32); contrast × U(0.5, 1.5)
    (before or after the color steps, at random); saturation × U(0.5, 1.5) and hue + randint(−18, 18)·2° in HSV.
    (mmseg's HSV runs in OpenCV's 8-bit HSV, here in float: the colors agree to rounding.)"""

    def __init__(self, brightness_delta: int = 32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta: int = 18):
        super().__init__()
        self.brightness_delta, self.contrast_range = brightness_delta, tuple(contrast_range)
        self.saturation_range, self.hue_delta = tuple(saturation_range), hue_delta

    @staticmethod
    def _uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        coin = lambda: bool(torch.randint(2, ()))  # noqa: E731
        p = {"brightness": self._uniform(-self.brightness_delta, self.brightness_delta) if coin() else None,
             "contrast_first": coin()}
        p["contrast"] = self._uniform(*self.contrast_range) if coin() else None
        p["saturation"] = self._uniform(*self.saturation_range) if coin() else None
        p["hue"] = int(torch.randint(-self.hue_delta, self.hue_delta + 1, ())) if coin() else None
        return p

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        img = inpt.as_subclass(Tensor).float()
        sat = lambda x: x.clamp(0, 255).floor()  # noqa: E731  (mmseg: np.clip then astype(uint8))
        if params["brightness"] is not None:
            img = sat(img + params["brightness"])
        if params["contrast_first"] and params["contrast"] is not None:
            img = sat(img * params["contrast"])
        if params["saturation"] is not None or params["hue"] is not None:
            hsv = rgb_to_hsv(img)
            if params["saturation"] is not None:
                hsv[1] = (hsv[1] * params["saturation"]).clamp(0, 1)
            if params["hue"] is not None:
                hsv[0] = (hsv[0] + params["hue"] / 180.0) % 1.0  # OpenCV's 8-bit hue unit is 2 degrees
            img = sat(hsv_to_rgb(hsv) + 0.5)
        if not params["contrast_first"] and params["contrast"] is not None:
            img = sat(img * params["contrast"])
        return tv_tensors.wrap(img.to(inpt.dtype), like=inpt)


class PadTo(T.Transform):
    """Pad at the bottom/right to ``size`` (h, w): images with ``fill``, masks with ``mask_fill``."""

    def __init__(self, size: Sequence[int], fill: float = 0.0, mask_fill: int = 255):
        super().__init__()
        self.size, self.fill, self.mask_fill = tuple(size), fill, mask_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _find(flat_inputs, tv_tensors.Image).shape[-2:]
        return {"pad": [0, 0, max(self.size[1] - w, 0), max(self.size[0] - h, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["pad"]):
            return inpt
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, params["pad"], fill=fill)


def normalize(mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """uint8 image → float32 normalized (mmseg ``Normalize``, to_rgb: the images are read as RGB already)."""
    return T.Compose([T.ToDtype(torch.float32, scale=False), T.Normalize(list(mean), list(std))])


def build_train_transform(aug: dict, ignore_index: int = 255) -> T.Compose:
    """The training pipeline of the config's ``augment`` section."""
    steps = [RandomRescale(aug["scale"], None if aug["ratio_range"] else aug["ratios"], aug["ratio_range"]),
             RandomCropCatMax(aug["crop"], aug["cat_max_ratio"], ignore_index)]
    if aug["flip"] > 0:
        steps.append(T.RandomHorizontalFlip(aug["flip"]))
    if aug["photometric"]:
        steps.append(PhotoMetricDistortion())
    steps += [normalize(aug["mean"], aug["std"]), PadTo(aug["crop"], 0.0, ignore_index)]
    return T.Compose(steps)


def resize_for_test(image: Tensor, scale: Sequence[float], ratio: float = 1.0) -> Tensor:
    """The test-time keep-ratio resize of a uint8 image (3, H, W) or batch to fit ``scale``·ratio (mmseg
    ``MultiScaleFlipAug`` + ``Resize(keep_ratio=True)``)."""
    size = rescale_size(tuple(image.shape[-2:]), (int(scale[0] * ratio), int(scale[1] * ratio)))
    if tuple(size) == tuple(image.shape[-2:]):
        return image
    return resize_pair(image, size)


