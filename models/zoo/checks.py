"""Checks of a :class:`semask_models.zoo.ModelConfig` (``build_model`` overrides, ``model_overrides`` of a run
config): every field's type and range, and the fields that must agree with each other. Each error names the
field, the value and what is allowed."""
from __future__ import annotations

import dataclasses

from semask_kernels._env import BACKEND_NAMES

from ..validation import INT64, apply, boolean, integer, one_of, real, sequence
from .families import family_of_head, heads


def _backend(value):
    ok = isinstance(value, str) and value.lower() in BACKEND_NAMES
    return None if ok else f"one of {list(BACKEND_NAMES)}"


RULES = {
    "embed_dim": integer(lo=1),
    "depths": sequence(integer(lo=1), "integers >= 1", min_length=1),
    "num_heads": sequence(integer(lo=1), "integers >= 1", min_length=1),
    "window_size": integer(lo=1),
    "semantic": boolean(),
    "head": one_of(heads()),  # the heads of the families (semask_models.zoo.families)
    "num_classes": integer(lo=1),
    "mlp_ratio": real(gt=0),
    "drop_path_rate": real(lo=0, lt=1),
    "sem_window_size": integer(lo=1, none=True),
    "global_stages": sequence(integer(lo=0), "stage indices", none=True),
    "head_channels": integer(lo=1, none=True),
    "use_checkpoint": boolean(),
    "prior_weight": real(lo=0),
    "ohem_min_kept": integer(lo=1, none=True),
    "avg_non_ignore": boolean(),
    "ignore_index": integer(*INT64),
    "align_corners": boolean(),
    "backend": _backend,
    "sgr": boolean(),
    "sgr_tokens": integer(lo=1),
    "sgr_dim": integer(lo=8),
    "sgr_layers": integer(lo=1),
    "sgr_top": integer(lo=1),
    "sgr_rho": real(gt=0),
    "sgr_beta": real(lo=0),
    "sgr_connectivity": lambda v: None if v in (4, 8) and not isinstance(v, bool) else "4 or 8",
    # mask-classification heads
    "num_queries": integer(lo=1),
    "hidden_dim": integer(lo=1),
    "mask_dim": integer(lo=1),
    "nheads": integer(lo=1),
    "dim_feedforward": integer(lo=1),
    "dec_layers": integer(lo=1, none=True),
    "enc_layers": integer(lo=0),
    "dropout": real(lo=0, lt=1, none=True),
    "class_weight": real(lo=0, none=True),
    "mask_weight": real(lo=0, none=True),
    "dice_weight": real(lo=0, none=True),
    "no_object_weight": real(lo=0),
    "num_points": integer(lo=1),
    "prior_aux": boolean(),
    "size_divisibility": integer(lo=1),
}


def check_model_config(cfg, prefix: str = "", error: type = ValueError) -> None:
    """Raise ``error`` naming ``prefix + field`` for the first field of ``cfg`` (a ModelConfig) out of range."""
    values = dataclasses.asdict(cfg)
    apply(values, RULES, prefix, error)
    stages = len(cfg.depths)
    if len(cfg.num_heads) != stages:
        raise error(f"{prefix}num_heads = {cfg.num_heads!r} is not allowed: expected one entry per stage of "
                    f"{prefix}depths = {cfg.depths!r} ({stages})")
    for i, heads in enumerate(cfg.num_heads):
        dim = cfg.embed_dim * 2 ** i
        if dim % heads:
            raise error(f"{prefix}num_heads = {cfg.num_heads!r} is not allowed: stage {i} has {dim} channels "
                        f"({prefix}embed_dim · 2^{i}), which {heads} heads do not divide")
    stages_ok = cfg.global_stages is None or (
        all(0 <= s < stages for s in cfg.global_stages) and len(set(cfg.global_stages)) == len(cfg.global_stages))
    if not stages_ok:
        raise error(f"{prefix}global_stages = {cfg.global_stages!r} is not allowed: expected distinct stage "
                    f"indices in [0, {stages}) (the model has {stages} stages)")
    family_of_head(cfg.head).check(cfg, prefix, error)
    if cfg.sgr and cfg.sgr_dim % 8:
        raise error(f"{prefix}sgr_dim = {cfg.sgr_dim!r} is not allowed: expected a multiple of 8 (SGR's heads)")
