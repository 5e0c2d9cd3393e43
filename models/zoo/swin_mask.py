"""The mask-classification Swin family of the zoo: ``[semask_]swin_{t,s,b,l}_{maskformer, mask2former,
mask2former_fapn, mask2former_msfapn}`` (a :class:`~semask_models.segmentors.mask_segmentor.MaskSegmentor`; names,
backbone and SGR as :mod:`semask_models.zoo.swin`).

The official values of each family (SeMask-MaskFormer / SeMask-Mask2Former configs and ``config.py``):

| | MaskFormer | Mask2Former |
|---|---|---|
| pixel decoder | FPN (``BasePixelDecoder``), conv/mask 256, GN | MSDeformAttn, 6 encoder layers, conv/mask 256, GN |
| transformer decoder | DETR, 6 layers, stride 32, dropout 0.1 | masked attention, 9 layers + initial, dropout 0 |
| queries, hidden, heads, FFN | 100, 256, 8, 2048 | 100, 256, 8, 2048 |
| loss weights (class / mask / dice), no object | 1 / 20 (focal) / 1, 0.1 | 2 / 5 (BCE) / 5, 0.1, 12544 points |
| semantic stages (SeMask) | windowed 1-3, global 4 | K = 150: windowed 1-3, global 4; otherwise all windowed |

``mask2former_fapn`` / ``mask2former_msfapn``: Mask2Former with the FaPN / MSFaPN pixel decoder
(:mod:`semask_models.heads.fapn`, SeMask-FAPN tree; semantic stages 1-2 windowed, 3-4 global).
"""
from __future__ import annotations

from torch import nn

from . import swin

MASK_HEADS = ("maskformer", "mask2former", "mask2former_fapn", "mask2former_msfapn")
HEADS = MASK_HEADS
fields = swin.fields

FAMILY_DEFAULTS = {
    "maskformer": dict(dec_layers=6, dropout=0.1, class_weight=1.0, mask_weight=20.0, dice_weight=1.0),
    "mask2former": dict(dec_layers=10, dropout=0.0, class_weight=2.0, mask_weight=5.0, dice_weight=5.0),
}
FAMILY_DEFAULTS["mask2former_fapn"] = FAMILY_DEFAULTS["mask2former_msfapn"] = FAMILY_DEFAULTS["mask2former"]


def mask_global_stages(head: str, num_classes: int) -> tuple[int, ...]:
    """Stages with global semantic attention in the official detectron2 backbones: MaskFormer always stage 4;
    Mask2Former stage 4 when K = 150 (``n_cls == 150`` in the official ``BasicLayer``), none otherwise;
    Mask2Former FaPN / MSFaPN stages 3 and 4."""
    if head == "maskformer":
        return (3,)
    if head == "mask2former":
        return (3,) if num_classes == 150 else ()
    if head in ("mask2former_fapn", "mask2former_msfapn"):
        return (2, 3)  # the SeMask-FAPN backbone: stages 1-2 windowed, 3-4 global, for every K
    raise ValueError(f"head must be one of {MASK_HEADS}, got {head!r}")


def names() -> list[str]:
    return swin.names_for(MASK_HEADS)


def check(cfg, prefix: str, error: type) -> None:
    """The fields of a mask-classification head that must agree with each other."""
    if cfg.hidden_dim % cfg.nheads:
        raise error(f"{prefix}nheads = {cfg.nheads!r} is not allowed: it must divide {prefix}hidden_dim = "
                    f"{cfg.hidden_dim!r}")
    conv_dim = cfg.head_channels or 256
    if conv_dim % 32:
        raise error(f"{prefix}head_channels = {conv_dim!r} is not allowed: the pixel decoder's GroupNorm has "
                    "32 groups, expected a multiple of 32")


def family_value(cfg, name: str):
    """``cfg.<name>``, or the family's official value when it is None."""
    value = getattr(cfg, name)
    return FAMILY_DEFAULTS[cfg.head][name] if value is None else value


def build_mask_head(cfg, in_channels) -> nn.Module:
    conv_dim = cfg.head_channels or 256
    common = dict(conv_dim=conv_dim, mask_dim=cfg.mask_dim, hidden_dim=cfg.hidden_dim, num_queries=cfg.num_queries,
                  nheads=cfg.nheads, dim_feedforward=cfg.dim_feedforward, dec_layers=family_value(cfg, "dec_layers"))
    if cfg.head == "maskformer":
        from ..heads.maskformer import MaskFormerHead
        return MaskFormerHead(in_channels, cfg.num_classes, dropout=family_value(cfg, "dropout"), **common)
    if cfg.head in ("mask2former_fapn", "mask2former_msfapn"):
        from ..heads.fapn import Mask2FormerFaPNHead
        return Mask2FormerFaPNHead(in_channels, cfg.num_classes, pixel_decoder=cfg.head.split("_")[1],
                                   enc_layers=cfg.enc_layers, dropout=family_value(cfg, "dropout"),
                                   backend=cfg.backend, **common)
    from ..heads.mask2former import Mask2FormerHead
    return Mask2FormerHead(in_channels, cfg.num_classes, enc_layers=cfg.enc_layers,
                           dropout=family_value(cfg, "dropout"), backend=cfg.backend, **common)


def build_criterion(cfg) -> nn.Module:
    from ..heads.mask_classification import SetCriterion
    weights = {k: family_value(cfg, k) for k in ("class_weight", "mask_weight", "dice_weight")}
    if cfg.head == "maskformer":
        return SetCriterion.maskformer(cfg.num_classes, no_object_weight=cfg.no_object_weight, **weights)
    return SetCriterion.mask2former(cfg.num_classes, no_object_weight=cfg.no_object_weight,
                                    num_points=cfg.num_points, **weights)


def build(cfg) -> nn.Module:
    from ..segmentors.mask_segmentor import MaskSegmentor
    backbone = swin.backbone(cfg, mask_global_stages(cfg.head, cfg.num_classes))
    sgr = swin.sgr(cfg, backbone)
    return MaskSegmentor(backbone, build_mask_head(cfg, backbone.num_features), build_criterion(cfg),
                         prior_weight=cfg.prior_weight, prior_aux=cfg.prior_aux, ignore_index=cfg.ignore_index,
                         size_divisibility=cfg.size_divisibility, backend=cfg.backend, sgr=sgr,
                         sgr_loss_args=swin.sgr_loss_args(cfg), sgr_connectivity=cfg.sgr_connectivity)
