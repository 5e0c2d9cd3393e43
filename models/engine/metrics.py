"""Confusion-matrix segmentation metrics with mmseg's semantics.

``cm[g, p]`` counts pixels of ground-truth class g predicted as p (ignored pixels excluded). Per class:
IoU = TP / (TP + FP + FN), Acc = TP / (TP + FN); a class absent from both the ground truth and the predictions
has IoU NaN (and a class absent from the ground truth Acc NaN), excluded from the means. aAcc = ΣTP / Σ labeled.
Values are fractions in [0, 1] (mmseg prints percentages).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(K, K) int64 counts; ``pred`` and ``label`` are integer tensors of one shape."""
    if pred.shape != label.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and label {tuple(label.shape)} must have the same shape")
    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = label != ignore_index
    label, pred = label[keep], pred[keep]
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise ValueError(f"label values must lie in [0, {num_classes}) or equal {ignore_index}")
    return torch.bincount(label * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _nanmean(values: Tensor) -> float:
    ok = ~torch.isnan(values)
    return float(values[ok].mean()) if bool(ok.any()) else float("nan")


def summarize(cm: Tensor, class_names: Optional[Sequence[str]] = None) -> dict:
    """mIoU, mAcc, aAcc and per-class IoU / Acc (NaN → None, so that the dict is plain JSON)."""
    cm = cm.double()
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    if len(names) != len(tp):
        raise ValueError(f"{len(names)} class names for a {len(tp)}-class confusion matrix")
    keys = _unique(names)
    clean = lambda x: None if math.isnan(x) else round(x, 6)  # noqa: E731
    total = float(gt.sum())
    return {
        "mIoU": clean(_nanmean(iou)),
        "mAcc": clean(_nanmean(acc)),
        "aAcc": clean(float(tp.sum()) / total) if total > 0 else None,
        "IoU": {k: clean(float(v)) for k, v in zip(keys, iou)},
        "Acc": {k: clean(float(v)) for k, v in zip(keys, acc)},
        "classes": names,
        "num_pixels": int(total),
    }


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def format_table(metrics: dict) -> str:
    """A readable per-class table with the summary line."""
    width = max([len(str(k)) for k in metrics["IoU"]] + [5])
    fmt = lambda v: "  n/a" if v is None else f"{100 * v:5.2f}"  # noqa: E731
    lines = [f"{'class':<{width}}   IoU    Acc"]
    for name in metrics["IoU"]:
        lines.append(f"{name:<{width}} {fmt(metrics['IoU'][name])}  {fmt(metrics['Acc'][name])}")
    lines.append(f"mIoU {fmt(metrics['mIoU'])}  mAcc {fmt(metrics['mAcc'])}  aAcc {fmt(metrics['aAcc'])}  (%)")
    return "\n".join(lines)
