"""Checkpoint loading: official Swin ImageNet checkpoints, timm Swin state dicts and official SeMask-FPN
(mmseg) checkpoints, into the models of this package.

Loading never runs code from a file: safetensors, or ``torch.load(weights_only=True)``; a pickle that needs more
is refused. Shapes that do not fit are refused naming the key, except ``relative_position_bias_table``, which is
resized bicubically when the window differs (as the official ``mmcv_custom/checkpoint.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from torch import nn

from .state_dict import (  # noqa: F401 - LoadReport, read_state_dict, unwrap, fit_to: public here too
    DROPPED_SUFFIXES, LoadReport, StateDict, fit_to, log_report, read_state_dict, refuse_partial,
    resize_bias_table, unwrap, whole_or_nothing)


def detect_format(sd: StateDict) -> str:
    """"segmentor" (mmseg/this package: ``backbone.``/``decode_head.`` prefixes), "official_swin"
    (downsample at the end of a stage) or "timm_swin" (downsample at the start of the next stage)."""
    if any(k.startswith("backbone.") for k in sd):
        return "segmentor"
    if any(k.startswith("layers.0.downsample.") for k in sd):
        return "official_swin"
    if any(k.startswith("layers.1.downsample.") for k in sd) or any(k.startswith("head.fc.") for k in sd):
        return "timm_swin"
    if any(k.startswith("layers.") for k in sd):
        return "official_swin"  # one stage, no downsample: the layouts agree
    raise ValueError("cannot tell the checkpoint format: no 'layers.*' or 'backbone.*' keys")


def swin_to_backbone(sd: StateDict, fmt: str) -> tuple[StateDict, list[str]]:
    """Rename an ImageNet Swin state dict to the backbone layout; returns (renamed, dropped keys)."""
    out, dropped = {}, []
    for key, value in sd.items():
        if key.startswith("head.") or key.startswith("norm.") or key.endswith(DROPPED_SUFFIXES):
            dropped.append(key)  # classifier, final norm and rebuilt buffers have no place in the backbone
            continue
        parts = key.split(".")
        if fmt == "timm_swin" and parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)  # timm merges at the start of stage i, officially at the end of i-1
        out[".".join(parts)] = value
    return out, dropped


def load_swin_backbone(backbone: nn.Module, source: Union[str, Path, StateDict]) -> LoadReport:
    """Load an official or timm Swin ImageNet checkpoint (path or state dict) into a ``SwinBackbone``."""
    sd = read_state_dict(source) if not isinstance(source, dict) else unwrap(source)
    fmt = detect_format(sd)
    if fmt == "segmentor":
        sd, fmt = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}, "segmentor backbone"
        dropped = []
    else:
        sd, dropped = swin_to_backbone(sd, fmt)
    report = fit_to(backbone, sd, fmt)
    report.unexpected += dropped
    log_report(report)
    return report


def load_checkpoint(model: nn.Module, source: Union[str, Path, StateDict], *,
                    allow_partial: bool = False) -> LoadReport:
    """Load into a ``Segmentor``: a full segmentor checkpoint (official SeMask-FPN mmseg layout, this package's, or
    an official SeMask-MaskFormer/-Mask2Former detectron2 ``.pkl``/``.pth``,
    :mod:`semask_models.checkpoints.detectron2`) or an ImageNet Swin checkpoint (also a detectron2 ``.pkl``) into
    its backbone; into a MiT segmentor, an official SegFormer / MiT checkpoint or a Hugging Face Segformer
    ``model.safetensors`` (:mod:`semask_models.checkpoints.mit`). Returns the report of the whole segmentor (an
    ImageNet checkpoint leaves the head and the semantic layers missing), also logged.

    A checkpoint that fits only in part (model keys left at their initial values, or weights of the file the model
    has no place for: a deeper model's, another head's) is refused with ``CheckpointError`` naming them, the model
    left as it was, unless ``allow_partial``: pass it for what is partial by design, such as an ImageNet
    backbone into a segmentor (``pretrained``); :meth:`LoadReport.complete` then says whether the load was."""
    if not isinstance(source, dict) and Path(source).suffix == ".pkl":  # detectron2: numpy arrays only
        from .detectron2 import read_pkl
        source = read_pkl(source)
    name = "checkpoint" if isinstance(source, dict) else str(source)
    sd = read_state_dict(source) if not isinstance(source, dict) else unwrap(source)
    if not allow_partial:
        return whole_or_nothing(model, name, lambda: load_checkpoint(model, sd, allow_partial=True))
    from .mit import detect_mit_format, load_mit_checkpoint
    mit_format = detect_mit_format(sd)
    if mit_format is not None:  # Mix Transformer / SegFormer: official or Hugging Face layout
        return load_mit_checkpoint(model, sd, mit_format)
    if any(k.startswith("sem_seg_head.") for k in sd):  # SeMask-MaskFormer / -Mask2Former (detectron2)
        from .detectron2 import load_detectron2_checkpoint
        report = load_detectron2_checkpoint(model, sd, allow_partial=True)
    elif detect_format(sd) != "segmentor":
        part = load_swin_backbone(model.backbone, sd)
        # the report is of the whole segmentor: everything outside the backbone keeps its initial values
        rest = [k for k in model.state_dict() if not k.startswith("backbone.")]
        report = LoadReport(part.source_format, missing=[f"backbone.{k}" for k in part.missing] + rest,
                            unexpected=part.unexpected, resized=[f"backbone.{k}" for k in part.resized])
    else:
        report = fit_to(model, sd, "segmentor")
        log_report(report)
    return report
