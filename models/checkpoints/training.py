"""Training checkpoints: model weights in safetensors, the rest of the training state (optimizer, scheduler,
iteration, RNG states, sampler settings) in a ``torch.save`` file loadable with ``torch.load(weights_only=True)``.

Every file is written to a temporary name in the same folder, flushed to disk and renamed over the final name
(``os.replace``); ``latest.json`` is replaced last. A crash at any point leaves the previous checkpoint and the
pointer to it intact; the temporary files of a killed writer are removed by the next save. A full disk is an
``OSError`` (errno ENOSPC) that says so (:mod:`semask_models.checkpoints.atomic`). Reading never executes code
from a file: a truncated or foreign file is refused with an error that names it. Both files carry a SHA-256 of
their content (:mod:`semask_models.checkpoints.checksum`), verified on load, so a corrupted tensor is refused
instead of loaded.

Layout under ``<work_dir>/checkpoints``: ``iter_0008000.safetensors``, ``iter_0008000.state.pt``, ``latest.json``.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .atomic import atomic_write, remove_stale_temporaries
from .checksum import checksum

logger = logging.getLogger("semask_models")
STATE_FORMAT = "semask_models.train_state"
WEIGHTS_FORMAT = "semask_models.segmentor"
STATE_VERSION = 1
# the entry every file of this version carries next to its "sha256" (a file with it but without a checksum was
# altered; files of older versions, without either, load with a warning)
CHECKSUMMED = "checksummed"
_NAME = re.compile(r"^iter_(\d+)\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or does not fit the model."""


def unwrap_model(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_weights(path: Union[str, Path], model: nn.Module, metadata: Optional[dict] = None) -> Path:
    from safetensors.torch import save_file
    sd = {k: v.detach().cpu().contiguous() for k, v in unwrap_model(model).state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}, CHECKSUMMED: "sha256",
            "sha256": checksum(sd)}
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


def save_checkpoint(ckpt_dir: Union[str, Path], iteration: int, model: nn.Module, state: dict,
                    keep: int = 0, metadata: Optional[dict] = None) -> tuple[Path, Path]:
    """Write ``iter_<n>.safetensors`` and ``iter_<n>.state.pt``, then point ``latest.json`` at them and remove
    all but the newest ``keep`` checkpoints (0 keeps all). The checkpoint just written counts as the newest and
    is never removed, whatever iterations the other files of the folder have."""
    ckpt_dir = Path(ckpt_dir)
    remove_stale_temporaries(ckpt_dir)
    stem = f"iter_{iteration:07d}"
    weights = save_weights(ckpt_dir / f"{stem}.safetensors", model, {"iter": iteration, **(metadata or {})})
    full_state = {"format": STATE_FORMAT, "version": STATE_VERSION, "iter": iteration,
                  "weights": weights.name, **state, CHECKSUMMED: "sha256"}
    full_state["sha256"] = checksum(full_state)
    state_path = atomic_write(ckpt_dir / f"{stem}.state.pt", lambda tmp: torch.save(full_state, tmp))
    pointer = json.dumps({"iter": iteration, "weights": weights.name, "state": state_path.name})
    atomic_write(ckpt_dir / "latest.json", lambda tmp: Path(tmp).write_text(pointer, encoding="utf-8"))
    if keep > 0:
        others = [p for p in list_checkpoints(ckpt_dir) if p.name != weights.name]
        for old in others[:max(len(others) - (keep - 1), 0)]:
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)
    return weights, state_path


def list_checkpoints(ckpt_dir: Union[str, Path]) -> list[Path]:
    """Weight files ``iter_*.safetensors`` of ``ckpt_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("iter_*.safetensors") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(work_dir: Union[str, Path]) -> Optional[tuple[Path, Path]]:
    """(weights, state) of the newest complete checkpoint of a work dir, or None when there is none."""
    ckpt_dir = Path(work_dir) / "checkpoints"
    pointer = ckpt_dir / "latest.json"
    if pointer.is_file():
        try:
            info = json.loads(pointer.read_text(encoding="utf-8"))
            weights, state = ckpt_dir / info["weights"], ckpt_dir / info["state"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{pointer} is not a valid checkpoint pointer: {e}") from e
        if not weights.is_file() or not state.is_file():
            raise CheckpointError(f"{pointer} points at {weights.name} / {state.name}, which do not both exist")
        return weights, state
    for weights in reversed(list_checkpoints(ckpt_dir)):
        state = weights.with_name(weights.name.replace(".safetensors", ".state.pt"))
        if state.is_file():
            return weights, state
    return None


def read_weights(path: Union[str, Path]) -> tuple[dict[str, Tensor], dict]:
    """(state dict, metadata) of a safetensors file written by :func:`save_weights`."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own error types for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or foreign?): {e}") from e
    if meta.get("format") == WEIGHTS_FORMAT:
        verify(path, sd, meta.get("sha256"), required=CHECKSUMMED in meta)
    return sd, meta


def verify(path: Union[str, Path], content, expected: Optional[str], required: bool = False) -> None:
    """Refuse ``content`` read from ``path`` unless its checksum is ``expected``. Files of versions that wrote none
    are loaded with a warning; a file whose metadata says its writer stored one (``required``: the
    :data:`CHECKSUMMED` entry) is refused without it."""
    if expected is None and required:
        raise CheckpointError(f"{path} has no checksum, but it was written by a version that always stores one (its "
                              f"metadata has {CHECKSUMMED!r}): the SHA-256 entry was removed, so its integrity "
                              "cannot be verified; use another checkpoint")
    if expected is None:
        logger.warning("%s has no checksum (written by an older version): its integrity is not verified", path)
        return
    actual = checksum(content)
    if actual != expected:
        raise CheckpointError(f"{path} is corrupted: its content has SHA-256 {actual[:16]}..., the checksum "
                              f"stored when it was written is {expected[:16]}... (disk or copy error?); "
                              "use another checkpoint")


def load_weights(model: nn.Module, path: Union[str, Path]) -> dict:
    """Load a weights file of this package into ``model`` strictly; returns its metadata."""
    sd, meta = read_weights(path)
    if meta.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{path} is not a semask_models training checkpoint (metadata format "
                              f"{meta.get('format')!r}); use semask_models.checkpoints.convert.load_checkpoint for "
                              "other files")
    target = unwrap_model(model)
    own = target.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in sorted(set(sd) & set(own))
             if sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"shape mismatches {wrong[:5]} (is it from another config?)")
    target.load_state_dict(sd, strict=True)
    return meta


def read_state(path: Union[str, Path]) -> dict:
    """The training state written by :func:`save_checkpoint`, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain containers "
                              f"and loading it would run code from the file ({e})") from e
    except Exception as e:  # RuntimeError/EOFError/zipfile errors for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable training state (truncated or foreign?): {e}") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a semask_models training state (no format tag {STATE_FORMAT!r})")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path} has training-state version {state.get('version')}, this code reads "
                              f"version {STATE_VERSION}")
    expected = state.pop("sha256", None)
    verify(path, state, expected, required=CHECKSUMMED in state)
    return state


# RNG states as plain tensors/ints (numpy's state holds an ndarray, which weights_only refuses).

def rng_state() -> dict:
    import random

    import numpy as np
    np_state = np.random.get_state()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"keys": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                     "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
           "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
