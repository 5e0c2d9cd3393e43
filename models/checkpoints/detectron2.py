"""Loading the official SeMask-MaskFormer / SeMask-Mask2Former checkpoints (detectron2) into the
mask-classification segmentors of this package.

Two file kinds:

- ``.pkl``: detectron2's pickles, ``{"model": {name: numpy array}, "__author__": ..., ...}``. They are read with
  :class:`~semask_models.checkpoints.numpy_pickle.NumpyOnlyUnpickler`, which resolves only the few globals a
  pickled numpy array needs (array and dtype reconstruction, ``OrderedDict``, the latin-1 bytes codec of
  protocol-2 pickles), to stand-ins that fill every array from bytes of the file (a declared but unfilled array is
  refused, sizes are bounded by the file's), and refuses every other global with an :class:`UnsafePickleError`
  *before* anything is called, so a crafted file can neither run code nor load uninitialized memory.
- ``.pth`` / ``.pt``: ``torch.load(weights_only=True)``
  (:func:`semask_models.checkpoints.state_dict.read_state_dict`), which unwraps a ``model`` entry.

Key mapping: this package's mask-classification segmentors keep the official module names (``backbone.*``,
``sem_seg_head.pixel_decoder.*``, ``sem_seg_head.predictor.*``, ``criterion.empty_weight``), so the mapping only
(1) upgrades the version-1 head layout of MaskFormer (pixel-decoder weights directly under ``sem_seg_head.``,
as the official ``_load_from_state_dict`` does), and (2) leaves out the buffers this package rebuilds
(``relative_position_index``, ``attn_mask``; ``criterion.empty_weight`` is compared with the model's criterion and
a difference logged). Missing and unexpected keys follow the FPN loader's rules
(:func:`semask_models.checkpoints.state_dict.fit_to`): wrong shapes are refused naming the key, a differently sized
``relative_position_bias_table`` is resized bicubically, everything else is reported in a
:class:`~semask_models.checkpoints.state_dict.LoadReport`.

Example:
    >>> import semask_models
    >>> from semask_models.checkpoints.detectron2 import load_detectron2_checkpoint
    >>> model = semask_models.build_model("semask_swin_l_maskformer")              # doctest: +SKIP
    >>> report = load_detectron2_checkpoint(model, "semask_large_maskformer_ade20k.pkl")  # doctest: +SKIP
    >>> report.complete                                                              # doctest: +SKIP
    True
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor, nn

from .numpy_pickle import ALLOWED_GLOBALS, DeclaredArray, NumpyOnlyUnpickler, UnsafePickleError, loads
from .state_dict import (DROPPED_SUFFIXES, LoadReport, StateDict, fit_to, log_report, logger, read_state_dict,
                         unwrap, whole_or_nothing)

__all__ = ["ALLOWED_GLOBALS", "NumpyOnlyUnpickler", "UnsafePickleError", "load_detectron2_checkpoint",
           "map_detectron2_keys", "read_detectron2_weights", "read_pkl", "upgrade_head_layout"]

EMPTY_WEIGHT = "criterion.empty_weight"  # the official criterion's class-weight buffer, rebuilt from the config


def read_pkl(path: Union[str, Path]) -> StateDict:
    """The weights of a detectron2 ``.pkl``: ``{name: float/int tensor}`` from the ``model`` entry (or from the
    top level when the file is a bare name → array mapping). Raises :class:`UnsafePickleError` for a pickle
    that needs anything but numpy arrays, ``ValueError`` for a file that is not such a pickle."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a directory, expected a detectron2 .pkl file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise ValueError(f"{path} is a PyTorch zip checkpoint, not a detectron2 pickle of numpy arrays: name it "
                         ".pth (it is then read with torch.load(weights_only=True))")
    try:
        obj = loads(data, str(path))
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated stream, a foreign format, ...: pickle raises many types
        if isinstance(e, ValueError) and str(e).startswith(str(path)):  # numpy_pickle's own refusals
            raise
        raise ValueError(f"{path} is not a readable detectron2 .pkl (truncated or another format?): "
                         f"{type(e).__name__}: {e}") from e
    weights = obj
    if isinstance(obj, dict) and "model" in obj:
        weights = obj["model"]
        if not isinstance(weights, dict):
            raise ValueError(f"{path}: its 'model' entry is a {type(weights).__name__}, expected a dict of numpy "
                             "arrays (name -> array)")
    if not isinstance(weights, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict of numpy arrays (detectron2 "
                         "'model' entry)")
    out = {}
    for key, value in weights.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: weight names must be strings, got {key!r:.80}")
        if isinstance(value, DeclaredArray):
            value = value.filled(f"weight {key!r}")
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: weight {key!r} is a {type(value).__name__}, expected a numpy array")
        if value.dtype.kind not in "fiub":
            raise ValueError(f"{path}: weight {key!r} has dtype {value.dtype}, expected a numeric array")
        native = value.dtype.newbyteorder("=")  # torch takes native byte order only (big-endian files exist)
        out[key] = torch.from_numpy(np.array(value, dtype=native, order="C"))  # a copy; 0-d stays 0-d
    return out


def read_detectron2_weights(path: Union[str, Path]) -> StateDict:
    """Tensors of a detectron2 checkpoint: ``.pkl`` through :func:`read_pkl`, anything else through
    :func:`semask_models.checkpoints.state_dict.read_state_dict` (``weights_only`` torch.load, ``model`` entry
    unwrapped)."""
    path = Path(path)
    return read_pkl(path) if path.suffix == ".pkl" else read_state_dict(path)


def upgrade_head_layout(sd: StateDict) -> StateDict:
    """The official ``MaskFormerHead._load_from_state_dict`` conversion: version-1 files kept the pixel decoder's
    weights directly under ``sem_seg_head.``; they belong under ``sem_seg_head.pixel_decoder.``."""
    prefix = "sem_seg_head."
    if any(k.startswith(prefix + "pixel_decoder.") for k in sd):
        return dict(sd)
    out = {}
    for key, value in sd.items():
        if key.startswith(prefix) and not key.startswith(prefix + "predictor."):
            key = prefix + "pixel_decoder." + key[len(prefix):]
        out[key] = value
    return out


def map_detectron2_keys(sd: StateDict) -> tuple[StateDict, list[str]]:
    """Official detectron2 names → this package's (see the module docstring); returns (mapped, dropped keys)."""
    sd = upgrade_head_layout(sd)
    dropped = sorted(k for k in sd if k.endswith(DROPPED_SUFFIXES))
    return {k: v for k, v in sd.items() if not k.endswith(DROPPED_SUFFIXES)}, dropped


def load_detectron2_checkpoint(model: nn.Module, source: Union[str, Path, StateDict], *,
                               allow_partial: bool = False) -> LoadReport:
    """Load an official SeMask-MaskFormer / SeMask-Mask2Former checkpoint (``.pkl``, ``.pth`` or a state dict)
    into a mask-classification segmentor; returns (and logs) the report. A checkpoint that fits only in part is
    refused (``CheckpointError`` naming the keys, the model left as it was) unless ``allow_partial``; then
    ``report.complete`` says whether every model key came from the file and every weight of the file was used."""
    if isinstance(source, dict):
        sd = unwrap(source)
    else:
        sd = read_detectron2_weights(source)
    if not allow_partial:
        name = "checkpoint" if isinstance(source, dict) else str(source)
        return whole_or_nothing(model, name, lambda: load_detectron2_checkpoint(model, sd, allow_partial=True))
    if not any(k.startswith(("backbone.", "sem_seg_head.")) for k in sd):
        raise ValueError("not a detectron2 segmentor checkpoint: no 'backbone.*' or 'sem_seg_head.*' keys (an "
                         "ImageNet Swin checkpoint? load it with semask_models.checkpoints.convert.load_swin_backbone)")
    mapped, dropped = map_detectron2_keys(sd)
    _check_empty_weight(model, mapped.pop(EMPTY_WEIGHT, None))
    own = model.state_dict()
    for key, value in mapped.items():  # the file's dtype (float64 from some converters) → the model's
        if key in own and isinstance(value, Tensor) and value.dtype != own[key].dtype and value.is_floating_point():
            mapped[key] = value.to(own[key].dtype)
    report = fit_to(model, mapped, "detectron2")
    report.unexpected += dropped
    log_report(report)
    return report


def _check_empty_weight(model: nn.Module, stored) -> None:
    """The official criterion stored its class weights (1 … 1, no_object_weight) as a buffer; this package
    rebuilds them from the config, so the file's copy only tells whether the two agree."""
    criterion = getattr(model, "criterion", None)
    own = getattr(criterion, "empty_weight", None)
    if stored is None or own is None:
        return
    if stored.shape != own.shape or not torch.allclose(stored.float().cpu(), own.float().cpu()):
        logger.warning("%s in the checkpoint (no-object weight %s) differs from the model's criterion (%s): "
                       "training would weight the no-object class differently from the official run", EMPTY_WEIGHT,
                       float(stored.flatten()[-1]), float(own[-1]))

