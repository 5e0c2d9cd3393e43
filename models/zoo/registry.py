"""The registry of zoo names: ``build_model(name, num_classes=..., **overrides)`` finds the family of ``name``
(:mod:`semask_models.zoo.families`), fills a :class:`ModelConfig` from the name and the overrides, checks it and
calls the family's ``build`` once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from torch import nn

from .checks import check_model_config
from .families import FAMILIES, family_of_head, family_of_name


@dataclass
class ModelConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    semantic: bool
    head: str
    num_classes: int = 150
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.3
    sem_window_size: Optional[int] = None  # None: the Swin window, as the official configs
    global_stages: Optional[tuple[int, ...]] = None  # None: the official rule
    head_channels: Optional[int] = None  # None: 256 (FPN, MaskFormer, Mask2Former conv_dim) / 512 (UperNet)
    use_checkpoint: bool = False
    prior_weight: float = 0.4
    ohem_min_kept: Optional[int] = None
    avg_non_ignore: bool = False
    ignore_index: int = 255
    align_corners: bool = False
    backend: str = "auto"
    # SGR (global reasoning after the last stage); defaults of the paper: K = 256 tokens, top L = 64, ρ = 1, β = 0.25
    sgr: bool = False
    sgr_tokens: int = 256
    sgr_dim: int = 256
    sgr_layers: int = 2
    sgr_top: int = 64
    sgr_rho: float = 1.0
    sgr_beta: float = 0.25
    sgr_connectivity: int = 8
    # mask-classification heads (maskformer / mask2former, semask_models.zoo.swin_mask); None: the family's value
    num_queries: int = 100
    hidden_dim: int = 256
    mask_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: Optional[int] = None  # official DEC_LAYERS: 6 (MaskFormer) / 10 (Mask2Former: 9 + initial prediction)
    enc_layers: int = 6  # Mask2Former's deformable pixel-decoder encoder layers
    dropout: Optional[float] = None  # 0.1 / 0.0
    class_weight: Optional[float] = None  # 1 / 2
    mask_weight: Optional[float] = None  # 20 (focal) / 5 (BCE)
    dice_weight: Optional[float] = None  # 1 / 5
    no_object_weight: float = 0.1
    num_points: int = 12544  # Mask2Former's point-sampled mask losses
    prior_aux: bool = True  # loss_cate on every deep-supervision output too
    size_divisibility: int = 32
    extra: dict = field(default_factory=dict, repr=False)


def model_names(sgr: bool = False) -> list[str]:
    """The zoo's names; with ``sgr=True`` also the ``..._sgr`` variants (SGR after the last stage)."""
    names = [name for family in FAMILIES for name in family.names()]
    return names + [f"{n}_sgr" for n in names] if sgr else names


def config_for(name: str, num_classes: int = 150, **overrides) -> ModelConfig:
    """The configuration of zoo model ``name`` with ``overrides`` (any ModelConfig field), every field checked
    (:func:`semask_models.zoo.checks.check_model_config`)."""
    cfg = unchecked_config(name, num_classes, **overrides)
    check_model_config(cfg)
    return cfg


def unchecked_config(name: str, num_classes: int = 150, **overrides) -> ModelConfig:
    """:func:`config_for` without the value checks (unknown names and fields are still refused)."""
    if name not in model_names(sgr=True):
        raise ValueError(f"unknown model {name!r}; available: {model_names()} (each also with '_sgr')")
    with_sgr = name.endswith("_sgr")
    base = name[: -len("_sgr")] if with_sgr else name
    cfg = ModelConfig(**family_of_name(base).fields(base), num_classes=num_classes, sgr=with_sgr)
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name!r}; known: {sorted(known)}")
    return dataclasses.replace(cfg, **overrides)


def build_from_config(cfg: ModelConfig) -> nn.Module:
    """The segmentor of ``cfg``, checked first, built by the family of ``cfg.head``."""
    check_model_config(cfg)
    return family_of_head(cfg.head).build(cfg)


def build_model(name: str, num_classes: int = 150, **overrides) -> nn.Module:
    """Build a zoo model: ``semask_swin_{t,s,b,l}_fpn``, ``swin_{t,s,b,l}_fpn``, ``semask_swin_{t,s,b,l}_upernet``,
    ``swin_{t,s,b,l}_upernet``, and the mask-classification ``[semask_]swin_{t,s,b,l}_{maskformer, mask2former,
    mask2former_fapn, mask2former_msfapn}`` (:mod:`semask_models.zoo.swin_mask`; a ``MaskSegmentor``), each also with an
    ``_sgr`` suffix (or ``sgr=True``). ``overrides`` are ModelConfig fields (e.g. ``drop_path_rate=0.0``,
    ``backend="triton"``, ``global_stages=()``). Build on the meta device with ``with torch.device("meta"):``.

    Example:
        >>> import semask_models
        >>> model = semask_models.build_model("semask_swin_t_fpn", num_classes=150)
    """
    return build_from_config(config_for(name, num_classes, **overrides))
