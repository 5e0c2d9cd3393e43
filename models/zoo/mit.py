"""The Mix Transformer family of the zoo: ``[semask_]mit_b{0..5}_{segformer,fpn}`` (a
:class:`~semask_models.segmentors.segmentor.Segmentor` with the SegFormer or the Semantic-FPN head).

SegFormer's variants (``mix_transformer.py`` ``mit_b0`` … ``mit_b5``): widths 32-64-160-256 (B0) and 64-128-320-512
(B1-B5), heads 1-2-5-8, reduction ratios 8-4-2-1, MLP ratio 4, drop path 0.1. The SegFormer head's width is 256
for B0/B1 and 768 for B2-B5; Semantic-FPN keeps its 256. SeMask-MiT adds one semantic layer per stage
(:mod:`semask_models.backbones.mit` says where and why windowed/global) with the prior loss at weight 0.4.

The family owns its configuration dataclass, :class:`MitModelConfig` (``CONFIG``): MiT's per-stage widths and
reduction ratios have no place in the Swin ``ModelConfig`` (one ``embed_dim`` doubled per stage, a window), and
the Swin fields (window, SGR, mask-classification) none in MiT. The registry asks ``config(name, num_classes,
**overrides)`` for it, and dispatches ``check`` / ``build`` by its type
(:func:`semask_models.zoo.families.family_of_config`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..backbones.mit import MiTBackbone
from ..heads.fpn import FPNHead
from ..heads.segformer_head import SegFormerHead
from ..segmentors.segmentor import Segmentor
from ..validation import INT64, apply, backend_name, boolean, integer, one_of, real, sequence

MIT_DEPTHS = {0: (2, 2, 2, 2), 1: (2, 2, 2, 2), 2: (3, 4, 6, 3), 3: (3, 4, 18, 3), 4: (3, 8, 27, 3), 5: (3, 6, 40, 3)}
MIT_VARIANTS = {
    f"b{v}": dict(embed_dims=(32, 64, 160, 256) if v == 0 else (64, 128, 320, 512), depths=depths,
                  num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1))
    for v, depths in MIT_DEPTHS.items()}
HEADS = ("segformer", "fpn")  # MitModelConfig.head values (MiT configs only: "fpn" is also a Swin head)


def default_head_channels(variant: str, head: str) -> int:
    """SegFormer's decoder width: 256 (B0, B1) / 768 (B2-B5); Semantic-FPN: 256."""
    return 256 if head == "fpn" or variant in ("b0", "b1") else 768


@dataclass
class MitModelConfig:
    """A MiT / SeMask-MiT zoo model; every field can be overridden (``build_model(name, **overrides)``)."""
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    sr_ratios: tuple[int, ...]
    semantic: bool
    head: str
    num_classes: int = 150
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    head_channels: Optional[int] = None  # None: 256 (B0/B1 SegFormer head, FPN) / 768 (B2-B5 SegFormer head)
    sem_depths: tuple[int, ...] = (1, 1, 1, 1)  # N_S per stage, the paper's best setting 1
    sem_window_size: int = 8  # windowed semantic attention outside global_stages (backbones/mit.py: why)
    global_stages: tuple[int, ...] = (2, 3)
    use_checkpoint: bool = False
    prior_weight: float = 0.4
    ohem_min_kept: Optional[int] = None
    avg_non_ignore: bool = False
    ignore_index: int = 255
    align_corners: bool = False
    backend: str = "auto"
    variant: str = "b0"
    extra: dict = field(default_factory=dict, repr=False)


def _stage_ints(text):
    return sequence(integer(lo=1), text, min_length=1)


RULES = {
    "embed_dims": _stage_ints("integers >= 1"),
    "depths": _stage_ints("integers >= 1"),
    "num_heads": _stage_ints("integers >= 1"),
    "sr_ratios": _stage_ints("integers >= 1"),
    "semantic": boolean(),
    "head": one_of(HEADS),
    "num_classes": integer(lo=1),
    "mlp_ratio": real(gt=0),
    "drop_path_rate": real(lo=0, lt=1),
    "head_channels": integer(lo=1, none=True),
    "sem_depths": _stage_ints("integers >= 1 (N_S)"),
    "sem_window_size": integer(lo=1),
    "global_stages": sequence(integer(lo=0), "stage indices"),
    "use_checkpoint": boolean(),
    "prior_weight": real(lo=0),
    "ohem_min_kept": integer(lo=1, none=True),
    "avg_non_ignore": boolean(),
    "ignore_index": integer(*INT64),
    "align_corners": boolean(),
    "variant": one_of(tuple(MIT_VARIANTS)),
}


def check(cfg: MitModelConfig, prefix: str = "", error: type = ValueError) -> None:
    """Raise ``error`` naming ``prefix + field`` for the first field of ``cfg`` out of range or inconsistent."""
    apply(dataclasses.asdict(cfg), {**RULES, "backend": backend_name}, prefix, error)
    stages = len(cfg.depths)
    for name in ("embed_dims", "num_heads", "sr_ratios", "sem_depths"):
        if len(getattr(cfg, name)) != stages:
            raise error(f"{prefix}{name} = {getattr(cfg, name)!r} is not allowed: expected one entry per stage of "
                        f"{prefix}depths = {cfg.depths!r} ({stages})")
    for i, (dim, heads) in enumerate(zip(cfg.embed_dims, cfg.num_heads)):
        if dim % heads:
            raise error(f"{prefix}num_heads = {cfg.num_heads!r} is not allowed: stage {i} has {dim} channels "
                        f"({prefix}embed_dims[{i}]), which {heads} heads do not divide")
    if not all(0 <= s < stages for s in cfg.global_stages) or len(set(cfg.global_stages)) != len(cfg.global_stages):
        raise error(f"{prefix}global_stages = {cfg.global_stages!r} is not allowed: expected distinct stage "
                    f"indices in [0, {stages}) (the model has {stages} stages)")


def names() -> list[str]:
    return [f"{prefix}mit_{v}_{head}" for head in HEADS for prefix in ("semask_", "") for v in MIT_VARIANTS]


def fields(name: str) -> dict:
    """The MitModelConfig fields a name fixes: the variant's sizes, ``semantic``, ``head`` and ``variant``."""
    variant, _, head = name.partition("mit_")[2].partition("_")
    return dict(**MIT_VARIANTS[variant], semantic=name.startswith("semask_"), head=head, variant=variant)


def config(name: str, num_classes: int = 150, **overrides) -> MitModelConfig:
    """The unchecked configuration of ``name`` with ``overrides`` (MitModelConfig fields; unknown ones refused)."""
    if name not in names():
        raise ValueError(f"unknown model {name!r}; MiT models: {names()}")
    cfg = MitModelConfig(**fields(name), num_classes=num_classes)
    known = {f.name for f in dataclasses.fields(MitModelConfig)} - {"extra", "variant"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name!r}; known: {sorted(known)}")
    cfg = dataclasses.replace(cfg, **overrides)
    for key in ("embed_dims", "depths", "num_heads", "sr_ratios", "sem_depths", "global_stages"):
        value = getattr(cfg, key)
        if isinstance(value, list):  # YAML gives lists
            setattr(cfg, key, tuple(value))
    return cfg


CONFIG = MitModelConfig


def build(cfg: MitModelConfig) -> Segmentor:
    backbone = MiTBackbone(
        embed_dims=cfg.embed_dims, depths=cfg.depths, num_heads=cfg.num_heads, sr_ratios=cfg.sr_ratios,
        mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
        num_classes=cfg.num_classes if cfg.semantic else None, sem_depths=cfg.sem_depths,
        sem_window_size=cfg.sem_window_size, global_stages=cfg.global_stages, use_checkpoint=cfg.use_checkpoint,
        backend=cfg.backend)
    channels = cfg.head_channels or default_head_channels(cfg.variant, cfg.head)
    if cfg.head == "segformer":
        head = SegFormerHead(backbone.num_features, cfg.num_classes, channels=channels,
                             align_corners=cfg.align_corners)
    else:
        head = FPNHead(backbone.num_features, cfg.num_classes, channels=channels, align_corners=cfg.align_corners)
    return Segmentor(backbone, head, prior_weight=cfg.prior_weight, ignore_index=cfg.ignore_index,
                     avg_non_ignore=cfg.avg_non_ignore, ohem_min_kept=cfg.ohem_min_kept,
                     align_corners=cfg.align_corners, backend=cfg.backend)
