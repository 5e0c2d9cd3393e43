"""Connected components of a label map, per class: SGR's instance supervision (a lower bound on instances;
stuff classes split into disjoint regions). Runs in the data workers on the augmented labels.

Uses ``connected-components-3d`` (multi-label 2-D maps natively: touching regions of different classes stay
apart), with scikit-image as the fallback. ``scipy.ndimage.label`` would merge touching regions of different
classes unless run once per class, which is why it is not used.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def connected_components(label: np.ndarray, *, ignore_index: int = 255, connectivity: int = 8,
                         min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Components of an (H, W) integer label map.

    Returns ``(ids, classes)``: ``ids`` (H, W) int32 with 0 for ignored pixels and components numbered 1..J in
    raster order of their first pixel, and ``classes`` (J,) int64, the class of each component. Components smaller
    than ``min_area`` pixels are dropped (their pixels get id 0). ``connectivity`` is 4 or 8.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a 2-D map, got shape {label.shape}")
    shifted = label.astype(np.int64) + 1  # class 0 must not be the libraries' background
    shifted[label == ignore_index] = 0
    ids = _label(shifted.astype(np.uint32), connectivity)
    count = int(ids.max())
    if count == 0:
        return ids.astype(np.int32), np.zeros(0, dtype=np.int64)
    flat_ids, flat_lab = ids.ravel(), shifted.ravel()
    first = np.full(count + 1, -1, dtype=np.int64)
    order = np.arange(flat_ids.size)[::-1]
    first[flat_ids[order]] = order  # the smallest index of each id wins (written last)
    classes = flat_lab[first[1:]] - 1
    areas = np.bincount(flat_ids, minlength=count + 1)[1:]
    keep = areas >= min_area
    # renumber the kept components 1..J in raster order of their first pixel
    kept = np.flatnonzero(keep) + 1
    kept = kept[np.argsort(first[kept])]
    remap = np.zeros(count + 1, dtype=np.int32)
    remap[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return remap[ids], classes[kept - 1].astype(np.int64)


def _label(arr: np.ndarray, connectivity: int) -> np.ndarray:
    try:
        import cc3d
    except ImportError:
        from skimage.measure import label as sk_label
        return sk_label(arr, background=0, connectivity=1 if connectivity == 4 else 2).astype(np.int64)
    return cc3d.connected_components(arr, connectivity=connectivity).astype(np.int64)


def component_masks(ids: Tensor, num: int | None = None) -> tuple[Tensor, Tensor]:
    """One-hot masks of component ids (B, H, W) on their device: ``(masks (B, J, H, W) float, present (B, J))``
    with J = ``num`` or the largest id in the batch; ``present[b, j]`` says whether image b has component j+1."""
    j = int(ids.max()) if num is None else num
    if j == 0:
        return ids.new_zeros((ids.shape[0], 0, *ids.shape[1:]), dtype=torch.float32), \
            ids.new_zeros((ids.shape[0], 0), dtype=torch.bool)
    onehot = torch.nn.functional.one_hot(ids.long().clamp(max=j), j + 1)[..., 1:]  # drop id 0
    masks = onehot.permute(0, 3, 1, 2).float()
    return masks, masks.flatten(2).amax(dim=2) > 0
