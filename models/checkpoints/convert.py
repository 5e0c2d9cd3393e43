"""Checkpoint loading: official Swin ImageNet checkpoints, timm Swin state dicts and official SeMask-FPN
(mmseg) checkpoints, into the models of this package.

Loading never runs code from a file: safetensors, or ``torch.load(weights_only=True)``; a pickle that needs more
is refused. Shapes that do not fit are refused naming the key, except ``relative_position_bias_table``, which is
resized bicubically when the window differs (as the official ``mmcv_custom/checkpoint.py``).
"""
from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger("semask_models")
StateDict = dict[str, Tensor]
_DROPPED_SUFFIXES = ("relative_position_index", "attn_mask")  # buffers the official code stored, rebuilt here


@dataclass
class LoadReport:
    """What a load did: keys the model kept its own values for, keys of the file that were not used, resized
    tables, and the detected checkpoint format."""
    source_format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    @property
    def unused(self) -> list[str]:
        """Unexpected keys that carried weights (buffers this package rebuilds, such as
        ``relative_position_index``, excluded)."""
        return [k for k in self.unexpected if not k.endswith(_DROPPED_SUFFIXES)]

    @property
    def complete(self) -> bool:
        """Every model key came from the file and every weight of the file was used."""
        return not self.missing and not self.unused

    def __str__(self) -> str:
        def block(title, keys):
            return f"{title} ({len(keys)}):" + "".join(f"\n  {k}" for k in keys) if keys else f"{title}: none"
        return "\n".join([f"checkpoint format: {self.source_format}", block("missing keys (kept as built)",
                          self.missing), block("unexpected keys (ignored)", self.unexpected),
                          block("resized relative_position_bias_table", self.resized)])


def read_state_dict(path: Union[str, Path]) -> StateDict:
    """Tensors of a ``.safetensors`` file or of a ``.pth``/``.pt``/``.bin`` pickle loaded with
    ``weights_only=True``; a ``model`` or ``state_dict`` entry is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from .training import read_weights
        return read_weights(path)[0]  # verifies the checksum of this package's own files
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _numpy_pickle(path):
            raise ValueError(f"{path} is a pickle of numpy arrays (a detectron2 checkpoint), not a PyTorch one: "
                             "name it .pkl, the reader of such files") from e
        raise ValueError(f"refusing to load {path}: it holds objects other than tensors and plain containers, and "
                         f"loading it would run code from the file (weights_only=True refused it: {e})") from e
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or foreign?): {e}") from e
    return unwrap(obj, str(path))


def _numpy_pickle(path: Path) -> bool:
    """Whether ``path`` reads as a pickle of numpy arrays (through the restricted reader: nothing runs)."""
    from .numpy_pickle import loads
    try:
        loads(path.read_bytes(), str(path))
    except Exception:  # noqa: BLE001 - any refusal: it is not one
        return False
    return True


def unwrap(obj, name: str = "checkpoint") -> StateDict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{name} does not hold a state dict of tensors")
    return dict(obj)


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
        if key.startswith("head.") or key.startswith("norm.") or key.endswith(_DROPPED_SUFFIXES):
            dropped.append(key)  # classifier, final norm and rebuilt buffers have no place in the backbone
            continue
        parts = key.split(".")
        if fmt == "timm_swin" and parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)  # timm merges at the start of stage i, officially at the end of i-1
        out[".".join(parts)] = value
    return out, dropped


def resize_bias_table(table: Tensor, num_entries: int) -> Tensor:
    """Bicubic resize of a ((2W-1)², nH) table to ``num_entries`` rows (square windows)."""
    old, heads = table.shape
    s1, s2 = math.isqrt(old), math.isqrt(num_entries)
    if s1 * s1 != old or s2 * s2 != num_entries:
        raise ValueError(f"relative_position_bias_table: cannot resize {old} → {num_entries} rows "
                         "(non-square windows)")
    grid = table.float().permute(1, 0).reshape(1, heads, s1, s1)
    return F.interpolate(grid, size=(s2, s2), mode="bicubic").reshape(heads, num_entries).permute(1, 0).to(table.dtype)


def fit_to(model: nn.Module, sd: StateDict, fmt: str) -> LoadReport:
    """Load ``sd`` into ``model`` non-strictly: resize tables, refuse other shape mismatches, report the rest."""
    own = model.state_dict()
    report = LoadReport(fmt)
    usable = {}
    for key, value in sd.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape != target.shape:
            if key.endswith("relative_position_bias_table") and value.shape[1] == target.shape[1]:
                value = resize_bias_table(value, target.shape[0])
                report.resized.append(key)
            else:
                raise ValueError(f"checkpoint key {key!r} has shape {tuple(value.shape)}, the model expects "
                                 f"{tuple(target.shape)}: refusing a checkpoint that does not fit")
        usable[key] = value
    report.missing = sorted(set(own) - set(usable))
    model.load_state_dict(usable, strict=False)
    return report


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
    _log(report)
    return report


def _log(report: LoadReport) -> None:
    level = logging.WARNING if report.missing or report.unexpected else logging.INFO
    logger.log(level, "checkpoint loaded\n%s", report)


def refuse_partial(report: LoadReport, name: str) -> None:
    """Raise ``CheckpointError`` (a ``ValueError``) naming what did not fit when ``report`` is not complete."""
    if report.complete:
        return
    from .training import CheckpointError

    what = "; ".join(
        f"{len(keys)} {text} ({', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''})"
        for keys, text in ((report.missing, "model key(s) are not in the file and would keep their initial values"),
                           (report.unused, "weight(s) of the file have no place in the model"))
        if keys)
    raise CheckpointError(f"{name} fits the model only in part: {what}. Is it from another config (another depth, "
                          f"no decode head)? Load it anyway with allow_partial=True (the CLI: --allow-partial)")


def whole_or_nothing(model: nn.Module, name: str, load) -> LoadReport:
    """``load()`` (which loads into ``model`` and returns its report), refused by :func:`refuse_partial` when the
    checkpoint fits only in part, the model then restored to the values it had."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = load()
    if not report.complete:
        model.load_state_dict(saved)
        refuse_partial(report, name)
    return report


def load_checkpoint(model: nn.Module, source: Union[str, Path, StateDict], *,
                    allow_partial: bool = False) -> LoadReport:
    """Load into a ``Segmentor``: a full segmentor checkpoint (official SeMask-FPN mmseg layout, this package's, or
    an official SeMask-MaskFormer/-Mask2Former detectron2 ``.pkl``/``.pth``,
    :mod:`semask_models.checkpoints.detectron2`) or an ImageNet Swin checkpoint (also a detectron2 ``.pkl``) into
    its backbone. Returns the report of the whole segmentor (an ImageNet checkpoint leaves the head and the
    semantic layers missing), also logged.

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
        _log(report)
    return report
