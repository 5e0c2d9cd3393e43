"""A state dict in and out of a model: reading one from a file without running code from it, fitting it to a
model non-strictly (differently sized relative-position tables resized, other shape mismatches refused naming the
key) and the :class:`LoadReport` of what the load did. Every checkpoint reader of the package
(:mod:`semask_models.checkpoints.convert`, :mod:`semask_models.checkpoints.detectron2`) ends here.
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
DROPPED_SUFFIXES = ("relative_position_index", "attn_mask")  # buffers the official code stored, rebuilt here


@dataclass
class LoadReport:
    """What a load did: keys the model kept its own values for, keys of the file that were not used, resized
    tables, and the detected checkpoint format."""
    source_format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # weights the official model holds but never uses

    @property
    def unused(self) -> list[str]:
        """Unexpected keys that carried weights (buffers this package rebuilds, such as
        ``relative_position_index``, excluded)."""
        return [k for k in self.unexpected if not k.endswith(DROPPED_SUFFIXES)]

    @property
    def complete(self) -> bool:
        """Every model key came from the file and every weight of the file was used."""
        return not self.missing and not self.unused

    def __str__(self) -> str:
        def block(title, keys):
            return f"{title} ({len(keys)}):" + "".join(f"\n  {k}" for k in keys) if keys else f"{title}: none"
        return "\n".join([f"checkpoint format: {self.source_format}", block("missing keys (kept as built)",
                          self.missing), block("unexpected keys (ignored)", self.unexpected),
                          block("resized relative_position_bias_table", self.resized)]
                         + ([block("ignored keys (unused by the official model too)", self.ignored)]
                            if self.ignored else []))


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


def log_report(report: LoadReport) -> None:
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
