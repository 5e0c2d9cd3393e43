"""Build the segmentor of a run config (zoo name + overrides + the dataset's K) and load ``pretrained``."""
from __future__ import annotations

import logging

from torch import nn

from ..zoo import build_model

logger = logging.getLogger("semask_models")


def build_segmentor(cfg: dict, num_classes: int) -> nn.Module:
    """``build_model(cfg["model"], num_classes, **cfg["model_overrides"])`` with ``cfg["pretrained"]`` loaded by
    :func:`semask_models.checkpoints.convert.load_checkpoint` (ImageNet Swin into the backbone, or a whole segmentor).
    ``num_classes`` comes from the dataset and sets both the head's and the semantic layers' K."""
    overrides = dict(cfg.get("model_overrides") or {})
    if "num_classes" in overrides and overrides.pop("num_classes") != num_classes:
        raise ValueError(f"model_overrides.num_classes disagrees with the dataset's {num_classes} classes; "
                         "set data.num_classes instead")
    if "ignore_index" not in overrides:
        overrides["ignore_index"] = cfg["data"]["ignore_index"]
    model = build_model(cfg["model"], num_classes=num_classes, **overrides)
    if cfg.get("pretrained"):
        from ..checkpoints.convert import load_checkpoint
        report = load_checkpoint(model, cfg["pretrained"], allow_partial=True)  # partial by design (ImageNet)
        logger.info("pretrained weights from %s (%s)", cfg["pretrained"], report.source_format)
    return model
