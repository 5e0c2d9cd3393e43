"""A synthetic segmentation dataset generated on the fly, so that training runs and tests need no download.

Each item is a pure function of (seed, split, index): a textured, low-saturation background (class 0) with
2..``max_shapes`` overlapping shapes of the object classes 1..K−1 painted on top, in random order, sizes, places
and colors. An object class has a shape kind (circle, rotated rectangle, triangle, ellipse, cycling), a hue band
(evenly spaced) and a stripe texture with its own orientation; brightness, saturation, size and stripe period vary
per instance, so a model must use color, texture and shape together.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .classes import default_palette

SHAPES = ("circle", "rectangle", "triangle", "ellipse")
_SPLIT_IDS = {"train": 0, "val": 1}


def mix_seed(*values: int) -> int:
    """A 63-bit seed that is a pure function of the integers given (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] (broadcastable tensors) → RGB (3, ...) in [0, 1]."""
    h = (h % 1.0) * 6.0
    i = torch.floor(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    idx = i.unsqueeze(0)
    pick = lambda c: torch.gather(c, 0, idx.expand(1, *c.shape[1:])).squeeze(0)  # noqa: E731
    return torch.stack([pick(r), pick(g), pick(b)])


class SyntheticSegmentation(Dataset):
    """Synthetic images (uint8 (3, H, W)) and labels (uint8 (H, W), values 0..K−1).

    Args:
        split: "train" or "val" (different images for the same index).
        num_classes: K ≥ 2 (class 0 is the background).
        size: (H, W), or ((h_min, h_max), (w_min, w_max)) for a size drawn per item.
        num_train, num_val: number of items of each split.
        min_shapes, max_shapes: shapes per image.
        seed: the dataset seed.

    Example:
        >>> ds = SyntheticSegmentation("train", num_classes=5, size=(64, 64))
        >>> item = ds[0]; item["image"].shape, item["label"].max() < 5
        (torch.Size([3, 64, 64]), tensor(True))
    """

    def __init__(self, split: str = "train", *, num_classes: int = 5,
                 size: Union[Sequence[int], Sequence[Sequence[int]]] = (96, 96), num_train: int = 512,
                 num_val: int = 64, min_shapes: int = 2, max_shapes: int = 5, seed: int = 0,
                 ignore_index: int = 255):
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + objects), got {num_classes}")
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
        self.split, self.seed = split, seed
        self.num_classes = num_classes
        self.classes = ("background",) + tuple(f"{SHAPES[(c - 1) % len(SHAPES)]}_{c}" for c in range(1, num_classes))
        self.palette = default_palette(num_classes)
        self.ignore_index = ignore_index
        self.size_range = self._size_range(size)
        self.length = num_train if split == "train" else num_val
        self.min_shapes, self.max_shapes = min_shapes, max_shapes

    @staticmethod
    def _size_range(size):
        if len(size) != 2:
            raise ValueError(f"size must be (H, W) or ((h_min, h_max), (w_min, w_max)), got {size!r}")
        out = []
        for s in size:
            lo, hi = (s, s) if isinstance(s, int) else tuple(s)
            if not 8 <= lo <= hi:
                raise ValueError(f"size bounds must satisfy 8 <= min <= max, got {size!r}")
            out.append((int(lo), int(hi)))
        return tuple(out)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        g = torch.Generator().manual_seed(mix_seed(self.seed, _SPLIT_IDS[self.split], index))
        u = lambda lo=0.0, hi=1.0: lo + (hi - lo) * torch.rand((), generator=g).item()  # noqa: E731
        (h0, h1), (w0, w1) = self.size_range
        H = int(torch.randint(h0, h1 + 1, (), generator=g))
        W = int(torch.randint(w0, w1 + 1, (), generator=g))
        yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                                indexing="ij")
        hsv = self._background(g, u, yy, xx)  # (3, H, W): hue, saturation, value planes
        label = torch.zeros(H, W, dtype=torch.uint8)
        n = int(torch.randint(self.min_shapes, self.max_shapes + 1, (), generator=g))
        for _ in range(n):
            cls = int(torch.randint(1, self.num_classes, (), generator=g))
            mask = self._shape(SHAPES[(cls - 1) % len(SHAPES)], g, u, yy, xx, min(H, W))
            hsv = torch.where(mask, self._object_texture(cls, g, u, yy, xx), hsv)
            label[mask] = cls
        image = hsv_to_rgb(hsv[0], hsv[1], hsv[2])
        image = image + 0.02 * torch.randn(image.shape, generator=g)
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        return {"image": image, "label": label, "name": f"synthetic_{self.split}_{index:05d}"}

    def _background(self, g, u, yy, xx) -> Tensor:
        tex = torch.zeros_like(yy)
        for _ in range(2):
            theta, period = u(0, math.pi), u(10, 30)
            tex += 0.08 * torch.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period + u(0, 6.3))
        v = (u(0.3, 0.7) + tex).clamp(0, 1)
        return torch.stack([torch.full_like(yy, u()), torch.full_like(yy, u(0.0, 0.15)), v])

    def _object_texture(self, cls: int, g, u, yy, xx) -> Tensor:
        hue = (cls - 1) / (self.num_classes - 1) + u(-0.04, 0.04)
        theta = (cls - 1) * math.pi / (self.num_classes - 1)
        stripes = torch.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / u(4, 8) + u(0, 6.3))
        v = (u(0.55, 0.95) * (1 + 0.15 * stripes)).clamp(0, 1)
        return torch.stack([torch.full_like(yy, hue), torch.full_like(yy, u(0.55, 1.0)), v])

    @staticmethod
    def _shape(kind: str, g, u, yy, xx, side: int) -> Tensor:
        H, W = yy.shape
        cy, cx = u(0, H - 1), u(0, W - 1)
        r = u(0.1, 0.32) * side
        angle = u(0, math.pi)
        dy, dx = yy - cy, xx - cx
        pu = dx * math.cos(angle) + dy * math.sin(angle)
        pv = -dx * math.sin(angle) + dy * math.cos(angle)
        if kind == "circle":
            return dy * dy + dx * dx <= r * r
        if kind == "rectangle":
            return (pu.abs() <= r) & (pv.abs() <= r * u(0.4, 1.0))
        if kind == "ellipse":
            b = r * u(0.3, 0.6)
            return (pu / r) ** 2 + (pv / b) ** 2 <= 1
        # triangle: inside all three edges of a (roughly equilateral) triangle of circumradius r
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3))
               for k in range(3)]
        inside = torch.ones_like(yy, dtype=torch.bool)
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
            inside &= (x2 - x1) * (yy - y1) - (y2 - y1) * (xx - x1) >= 0
        return inside
