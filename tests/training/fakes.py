"""Helpers of the training tests: a tiny model/data config and fake dataset folders of each layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

# A SeMask-Swin FPN small enough for a few CPU iterations per second, on 32-40 px synthetic images.
TINY = ["model_overrides.embed_dim=16", "model_overrides.num_heads=[1,1,1,1]", "model_overrides.head_channels=16",
        "model_overrides.drop_path_rate=0.1", "data.synthetic.size=[40,40]", "data.synthetic.num_train=16",
        "data.synthetic.num_val=4", "data.num_workers=0", "augment.scale=[40,40]", "augment.crop=[32,32]",
        "test.scale=[40,40]", "train.batch_size=4", "train.progress=false", "train.warmup_iters=2",
        "train.log_interval=1", "train.eval_interval=1000", "train.checkpoint_interval=1000"]


def write_pair(img_path: Path, seg_path: Path, label: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    img_path.parent.mkdir(parents=True, exist_ok=True)
    seg_path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, size=label.shape + (3,), dtype=np.uint8)
    Image.fromarray(image).save(img_path)
    Image.fromarray(label.astype(np.uint8), mode="L").save(seg_path)


def label_map(h: int, w: int, values, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(values), size=(h, w)).astype(np.uint8)


def make_ade(root: Path, n: int = 2) -> Path:
    base = root / "ADEChallengeData2016"
    for split in ("training", "validation"):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_pair(base / "images" / split / f"{stem}.jpg", base / "annotations" / split / f"{stem}.png",
                       label_map(20, 24, [0, 1, 2, 150], seed=i), seed=i)
    return base


def make_cityscapes(root: Path, n: int = 2) -> Path:
    for split in ("train", "val"):
        for i in range(n):
            city = ["aachen", "bremen"][i % 2]
            stem = f"{city}_000000_{i:06d}"
            write_pair(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                       root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png",
                       label_map(16, 32, [0, 5, 18, 255], seed=i), seed=i)
    return root


def make_cocostuff(root: Path, n: int = 2) -> Path:
    for split in ("train2014", "test2014"):
        for i in range(n):
            stem = f"COCO_{split}_{i:012d}"
            write_pair(root / "images" / split / f"{stem}.jpg",
                       root / "annotations" / split / f"{stem}_labelTrainIds.png",
                       label_map(24, 20, [0, 91, 170, 255], seed=i), seed=i)
    return root


def make_folder(root: Path, n: int = 2, classes=("sky", "road", "car")) -> Path:
    for split in ("train", "val"):
        for i in range(n):
            write_pair(root / "images" / split / f"img{i}.png", root / "masks" / split / f"img{i}.png",
                       label_map(12, 12, list(range(len(classes))) + [255], seed=i), seed=i)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def tiny_model(seed: int = 0):
    """A SeMask-Swin FPN of one block per stage and 8 channels, seeded: the checkpoint tests' model."""
    from semask_models.zoo import build_model
    torch.manual_seed(seed)
    return build_model("semask_swin_t_fpn", num_classes=3, embed_dim=8, depths=(1, 1, 1, 1),
                       num_heads=(1, 1, 1, 1), window_size=2, head_channels=8)
