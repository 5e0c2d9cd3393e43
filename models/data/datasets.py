"""Dataset readers: ADE20K, Cityscapes, COCO-Stuff-10k and a generic images/ + masks/ folder.

Each item is ``{"image": uint8 (3, H, W), "label": (H, W) uint8/int32, "name": str}`` at the original size, with
labels already mapped to [0, K) ∪ {ignore_index} (ADE20K's reduce_zero_label: 0 → 255, 1..150 → 0..149) and
checked: an item whose label map holds other values, or whose size differs from its image, raises a
:class:`DataError` that names the files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .classes import ADE20K_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, COCOSTUFF_CLASSES, default_palette
from .io import IMAGE_SUFFIXES, DataError, check_labels, read_image, read_label, require_dir


def reduce_zero_label(label: Tensor) -> Tensor:
    """mmseg's reduce_zero_label: 0 → 255 (ignored), v → v − 1 (255 stays 255)."""
    out = label.to(torch.int32) - 1
    out[(label == 0) | (label == 255)] = 255
    return out.to(label.dtype)


class SegmentationDataset(Dataset):
    """Pairs of (image, label map) files with their class list."""

    default_split = {"train": "train", "val": "val"}

    def __init__(self, samples: Sequence[tuple[Path, Path]], classes: Sequence[str], *, ignore_index: int = 255,
                 reduce_zero_label: bool = False, palette=None, check: bool = True, source: str = ""):
        if not samples:
            raise DataError(f"{source or type(self).__name__}: no samples found")
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.palette = list(palette) if palette is not None else default_palette(self.num_classes)
        self.check = check

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        img_path, seg_path = self.samples[index]
        image = read_image(img_path)
        label = read_label(seg_path)
        if tuple(image.shape[1:]) != tuple(label.shape):
            raise DataError(f"image {img_path} is {image.shape[2]}x{image.shape[1]} (WxH) but its label map "
                            f"{seg_path} is {label.shape[1]}x{label.shape[0]}")
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        if self.check:
            check_labels(label, self.num_classes, self.ignore_index, seg_path)
        return {"image": image, "label": label, "name": img_path.stem}


def pair_files(img_dir: Path, seg_dir: Path, img_suffix: str, seg_suffix: str, recursive: bool = False,
               what: str = "") -> list[tuple[Path, Path]]:
    """(image, label) pairs: every ``*img_suffix`` under ``img_dir`` with its ``<stem>seg_suffix`` in the same
    relative place under ``seg_dir``. A missing label is an error naming the image."""
    require_dir(img_dir, f"{what} images")
    require_dir(seg_dir, f"{what} labels")
    pattern = f"**/*{img_suffix}" if recursive else f"*{img_suffix}"
    images = sorted(p for p in img_dir.glob(pattern) if p.is_file())
    if not images:
        raise DataError(f"{what}: no '*{img_suffix}' images in {img_dir}")
    pairs = []
    for img in images:
        rel = img.relative_to(img_dir)
        stem = rel.name[: -len(img_suffix)]
        seg = seg_dir / rel.parent / f"{stem}{seg_suffix}"
        if not seg.is_file():
            raise DataError(f"{what}: image {img} has no label map (expected {seg})")
        pairs.append((img, seg))
    return pairs


class ADE20K(SegmentationDataset):
    """``ADEChallengeData2016/{images,annotations}/{training,validation}``, 150 classes, reduce_zero_label."""

    default_split = {"train": "training", "val": "validation"}

    def __init__(self, root, split: str = "training", *, img_suffix: str = ".jpg", seg_suffix: str = ".png",
                 reduce_zero_label: bool = True, **kw):
        root = require_dir(Path(root), "ADE20K root")
        pairs = pair_files(root / "images" / split, root / "annotations" / split, img_suffix, seg_suffix,
                           what=f"ADE20K {split}")
        super().__init__(pairs, ADE20K_CLASSES, reduce_zero_label=reduce_zero_label, source=str(root), **kw)


class Cityscapes(SegmentationDataset):
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``
    (made by cityscapesscripts' createTrainIdLabelImgs), 19 classes."""

    def __init__(self, root, split: str = "train", *, img_suffix: str = "_leftImg8bit.png",
                 seg_suffix: str = "_gtFine_labelTrainIds.png", reduce_zero_label: bool = False, **kw):
        root = require_dir(Path(root), "Cityscapes root")
        pairs = pair_files(root / "leftImg8bit" / split, root / "gtFine" / split, img_suffix, seg_suffix,
                           recursive=True, what=f"Cityscapes {split}")
        super().__init__(pairs, CITYSCAPES_CLASSES, reduce_zero_label=reduce_zero_label, palette=CITYSCAPES_PALETTE,
                         source=str(root), **kw)


class COCOStuff10k(SegmentationDataset):
    """``images/{train2014,test2014}/*.jpg`` with ``annotations/<split>/*_labelTrainIds.png`` (mmseg's
    coco_stuff10k conversion: 171 classes 0..170, 255 ignored)."""

    default_split = {"train": "train2014", "val": "test2014"}

    def __init__(self, root, split: str = "train2014", *, img_suffix: str = ".jpg",
                 seg_suffix: str = "_labelTrainIds.png", reduce_zero_label: bool = False, **kw):
        root = require_dir(Path(root), "COCO-Stuff-10k root")
        pairs = pair_files(root / "images" / split, root / "annotations" / split, img_suffix, seg_suffix,
                           what=f"COCO-Stuff-10k {split}")
        super().__init__(pairs, COCOSTUFF_CLASSES, reduce_zero_label=reduce_zero_label, source=str(root), **kw)


def read_class_list(classes, root: Path) -> list[str]:
    if isinstance(classes, (list, tuple)):
        return [str(c) for c in classes]
    path = Path(classes) if classes is not None else root / "classes.txt"
    if not path.is_absolute() and not path.exists():
        path = root / path
    if not path.is_file():
        raise DataError(f"folder dataset {root}: no class list (set data.classes to a list of names or a text "
                        f"file; looked for {path})")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"class list {path} is empty")
    return names


class FolderDataset(SegmentationDataset):
    """``root/images[/split]/*.{jpg,png,...}`` with ``root/masks[/split]/<stem>.png`` and a class list (names, or a
    text file; default ``root/classes.txt``). ``split`` None or "." reads ``root/images`` and ``root/masks``
    themselves."""

    default_split = {"train": "train", "val": "val"}

    def __init__(self, root, split: Optional[str] = "train", *, classes=None, img_suffix: Optional[str] = None,
                 seg_suffix: str = ".png", reduce_zero_label: bool = False, **kw):
        root = require_dir(Path(root), "folder dataset root")
        img_dir = require_dir(root / "images", "folder dataset")
        seg_dir = require_dir(root / "masks", "folder dataset")
        if split and split != ".":
            img_dir = require_dir(img_dir / split, f"folder dataset split {split!r}")
            seg_dir = require_dir(seg_dir / split, f"folder dataset split {split!r}")
        suffixes = (img_suffix,) if img_suffix else IMAGE_SUFFIXES
        pairs = []
        for img in sorted(p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in suffixes):
            seg = seg_dir / f"{img.stem}{seg_suffix}"
            if not seg.is_file():
                raise DataError(f"folder dataset: image {img} has no mask (expected {seg})")
            pairs.append((img, seg))
        if not pairs:
            raise DataError(f"folder dataset: no images ({', '.join(suffixes)}) in {img_dir}")
        super().__init__(pairs, read_class_list(classes, root), reduce_zero_label=reduce_zero_label,
                         source=str(root), **kw)


DATASETS = {"ade20k": ADE20K, "cityscapes": Cityscapes, "cocostuff10k": COCOStuff10k, "folder": FolderDataset}


def build_dataset(data_cfg: dict, split: str, seed: int = 0) -> Dataset:
    """The dataset of ``data_cfg`` (the config's ``data`` section) for ``split`` ∈ {"train", "val"}."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    kind = data_cfg["type"]
    if kind == "synthetic":
        from .synthetic import SyntheticSegmentation
        opts = dict(data_cfg.get("synthetic") or {})
        if data_cfg.get("num_classes") is not None:
            opts.setdefault("num_classes", data_cfg["num_classes"])
        ds = SyntheticSegmentation(split=split, seed=opts.pop("seed", seed), ignore_index=data_cfg["ignore_index"],
                                   **opts)
    else:
        if kind not in DATASETS:
            raise ValueError(f"data.type must be one of {sorted(DATASETS) + ['synthetic']}, got {kind!r}")
        if not data_cfg.get("root"):
            raise DataError(f"data.root is not set for the {kind} dataset")
        cls = DATASETS[kind]
        name = data_cfg.get(f"{split}_split") or cls.default_split[split]
        kw = {"ignore_index": data_cfg["ignore_index"]}
        for key in ("img_suffix", "seg_suffix", "reduce_zero_label"):
            if data_cfg.get(key) is not None:
                kw[key] = data_cfg[key]
        if kind == "folder":
            kw["classes"] = data_cfg.get("classes")
        ds = cls(data_cfg["root"], name, **kw)
    k = data_cfg.get("num_classes")
    if k is not None and k != ds.num_classes:
        raise DataError(f"data.num_classes is {k} but the {kind} dataset has {ds.num_classes} classes")
    return ds
