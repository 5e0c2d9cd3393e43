"""The per-pixel Swin family of the zoo: ``[semask_]swin_{t,s,b,l}_{fpn,upernet}`` (Semantic-FPN / UperNet on a
Swin or SeMask-Swin backbone, a :class:`~semask_models.segmentors.segmentor.Segmentor`).

It also holds what every Swin-backbone family shares: the variants, the name grammar
``[semask_]swin_<variant>_<head>`` and the backbone / SGR build. A family module gives the registry
(:mod:`semask_models.zoo.families`) ``HEADS``, ``names()``, ``fields(name)``, ``check(cfg, prefix, error)`` and
``build(cfg)``.
"""
from __future__ import annotations

from torch import nn

from ..backbones.swin import SwinBackbone
from ..heads.fpn import FPNHead
from ..heads.upernet import UPerHead
from ..segmentors.segmentor import Segmentor
from ..sgr import SGR

VARIANTS = {
    "t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}
HEADS = {"fpn": FPNHead, "upernet": UPerHead}
HEAD_CHANNELS = {"fpn": 256, "upernet": 512}  # when ModelConfig.head_channels is None


def official_global_stages(embed_dim: int, num_classes: int) -> tuple[int, ...]:
    """The SeMask-FPN rule: stages 3-4 global when embed_dim ∈ {96, 192} and K > 19, else all windowed."""
    return (2, 3) if embed_dim in (96, 192) and num_classes > 19 else ()


def names_for(heads) -> list[str]:
    """``[semask_]swin_<variant>_<head>`` for every head of ``heads``, variant and prefix (the zoo's order)."""
    return [f"{prefix}swin_{v}_{head}" for head in heads for prefix in ("semask_", "") for v in VARIANTS]


def names() -> list[str]:
    return names_for(HEADS)


def fields(name: str) -> dict:
    """The ModelConfig fields a Swin-backbone name fixes: the variant's sizes, ``semantic`` and ``head``."""
    variant, _, head = name.partition("swin_")[2].partition("_")  # heads may hold "_": mask2former_fapn
    return dict(**VARIANTS[variant], semantic=name.startswith("semask_"), head=head)


def check(cfg, prefix: str, error: type) -> None:
    """Nothing beyond the fields' own checks (:mod:`semask_models.zoo.checks`)."""


def backbone(cfg, global_stages: tuple[int, ...]) -> SwinBackbone:
    """The Swin / SeMask-Swin backbone of ``cfg``; ``cfg.global_stages`` wins over the family's ``global_stages``."""
    return SwinBackbone(
        embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads, window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
        num_classes=cfg.num_classes if cfg.semantic else None, sem_window_size=cfg.sem_window_size,
        global_stages=global_stages if cfg.global_stages is None else cfg.global_stages,
        use_checkpoint=cfg.use_checkpoint, backend=cfg.backend)


def sgr(cfg, backbone: SwinBackbone) -> SGR | None:
    """SGR after the last stage when ``cfg.sgr``, else None."""
    if not cfg.sgr:
        return None
    return SGR(backbone.num_features[-1], dim=cfg.sgr_dim, num_tokens=cfg.sgr_tokens, layers=cfg.sgr_layers)


def sgr_loss_args(cfg) -> dict:
    return dict(top=cfg.sgr_top, rho=cfg.sgr_rho, beta=cfg.sgr_beta)


def build(cfg) -> nn.Module:
    body = backbone(cfg, official_global_stages(cfg.embed_dim, cfg.num_classes))
    reasoning = sgr(cfg, body)  # before the head: the order of the random initialisations
    head = HEADS[cfg.head](body.num_features, cfg.num_classes, channels=cfg.head_channels or HEAD_CHANNELS[cfg.head],
                           align_corners=cfg.align_corners)
    return Segmentor(body, head, prior_weight=cfg.prior_weight, ignore_index=cfg.ignore_index,
                     avg_non_ignore=cfg.avg_non_ignore, ohem_min_kept=cfg.ohem_min_kept,
                     align_corners=cfg.align_corners, backend=cfg.backend, sgr=reasoning,
                     sgr_loss_args=sgr_loss_args(cfg), sgr_connectivity=cfg.sgr_connectivity)
