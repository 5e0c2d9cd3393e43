"""Reading images and label maps, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad data: a missing folder, an unreadable file, a size mismatch or labels out of range."""


def read_image(path: Path) -> Tensor:
    """RGB image as a uint8 tensor (3, H, W)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except Exception as e:  # PIL raises several types for truncated / foreign files
        raise DataError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def read_label(path: Path) -> Tensor:
    """Label map (H, W): uint8 for 8-bit PNGs ('L' or palette 'P': the indices), int32 for 16/32-bit ones."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise DataError(f"label map {path} has mode {im.mode!r}: expected a single-channel image of class "
                                "indices (8-bit grey or palette PNG)")
            arr = np.asarray(im)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"label map {path} does not exist") from None
    except Exception as e:
        raise DataError(f"cannot read label map {path}: {e}") from e
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int32)
    return torch.from_numpy(arr.copy())


def check_labels(label: Tensor, num_classes: int, ignore_index: int, path) -> None:
    """Every value must lie in [0, K) or equal ``ignore_index``."""
    bad = (label >= num_classes) & (label != ignore_index)
    if label.dtype != torch.uint8:
        bad |= label < 0
    if bool(bad.any()):
        values = torch.unique(label[bad]).tolist()
        shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
        raise DataError(f"label map {path} has values outside [0, {num_classes}) and the ignore index "
                        f"{ignore_index}: {shown} ({int(bad.sum())} pixels)")


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what}: folder {path} does not exist")
    return path
