"""The model zoo: ``build_model(name, num_classes=..., **overrides)``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Union

from .backbones.swin import SwinBackbone
from .heads.fpn import FPNHead
from .heads.upernet import UPerHead
from .mask_zoo import MASK_HEADS, build_mask_segmentor, mask_global_stages
from .mit_zoo import MitModelConfig, build_mit_from_config, mit_model_names, unchecked_mit_config
from .model_checks import check_model_config
from .segmentor import Segmentor
from .sgr import SGR

VARIANTS = {
    "t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}
HEADS = {"fpn": 256, "upernet": 512, "maskformer": 256, "mask2former": 256,  # head channels (conv_dim)
         "mask2former_fapn": 256, "mask2former_msfapn": 256}


def official_global_stages(embed_dim: int, num_classes: int) -> tuple[int, ...]:
    """The SeMask-FPN rule: stages 3-4 global when embed_dim ∈ {96, 192} and K > 19, else all windowed."""
    return (2, 3) if embed_dim in (96, 192) and num_classes > 19 else ()


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
    sem_depths: tuple[int, ...] = (1, 1, 1, 1)  # N_S, SemanticAttention blocks per stage (official: 1 everywhere)
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
    # mask-classification heads (maskformer / mask2former, semask_models.mask_zoo); None: the family's value
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
    """The zoo's names: the Swin family, then the MiT family (:mod:`semask_models.mit_zoo`); with ``sgr=True``
    also the Swin ``..._sgr`` variants (SGR after the last stage)."""
    names = [f"{prefix}swin_{v}_{head}" for head in HEADS for prefix in ("semask_", "") for v in VARIANTS]
    return (names + [f"{n}_sgr" for n in names] if sgr else names) + mit_model_names()


def config_for(name: str, num_classes: int = 150, **overrides) -> Union[ModelConfig, MitModelConfig]:
    """The configuration of zoo model ``name`` with ``overrides`` (any ModelConfig field), every field checked
    (:func:`semask_models.model_checks.check_model_config`)."""
    cfg = unchecked_config(name, num_classes, **overrides)
    check_model_config(cfg)
    return cfg


def unchecked_config(name: str, num_classes: int = 150, **overrides) -> Union[ModelConfig, MitModelConfig]:
    """:func:`config_for` without the value checks (unknown names and fields are still refused)."""
    if name in mit_model_names():
        return unchecked_mit_config(name, num_classes, **overrides)
    if name not in model_names(sgr=True):
        raise ValueError(f"unknown model {name!r}; available: {model_names()} (each also with '_sgr')")
    with_sgr = name.endswith("_sgr")
    base = name[: -len("_sgr")] if with_sgr else name
    variant, _, head = base.partition("swin_")[2].partition("_")  # heads may hold "_": mask2former_fapn
    cfg = ModelConfig(**VARIANTS[variant], semantic=base.startswith("semask_"), head=head,
                      num_classes=num_classes, sgr=with_sgr)
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name!r}; known: {sorted(known)}")
    return dataclasses.replace(cfg, **overrides)


def build_from_config(cfg: Union[ModelConfig, MitModelConfig]) -> Segmentor:
    if isinstance(cfg, MitModelConfig):
        return build_mit_from_config(cfg)
    check_model_config(cfg)
    if cfg.global_stages is not None:
        global_stages = cfg.global_stages
    elif cfg.head in MASK_HEADS:
        global_stages = mask_global_stages(cfg.head, cfg.num_classes)
    else:
        global_stages = official_global_stages(cfg.embed_dim, cfg.num_classes)
    backbone = SwinBackbone(
        embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads, window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
        num_classes=cfg.num_classes if cfg.semantic else None, sem_window_size=cfg.sem_window_size,
        global_stages=global_stages, use_checkpoint=cfg.use_checkpoint, backend=cfg.backend,
        sem_depths=cfg.sem_depths)
    sgr = (SGR(backbone.num_features[-1], dim=cfg.sgr_dim, num_tokens=cfg.sgr_tokens, layers=cfg.sgr_layers)
           if cfg.sgr else None)
    if cfg.head in MASK_HEADS:
        return build_mask_segmentor(cfg, backbone, sgr)
    head_cls = FPNHead if cfg.head == "fpn" else UPerHead
    head = head_cls(backbone.num_features, cfg.num_classes, channels=cfg.head_channels or HEADS[cfg.head],
                    align_corners=cfg.align_corners)
    return Segmentor(backbone, head, prior_weight=cfg.prior_weight, ignore_index=cfg.ignore_index,
                     avg_non_ignore=cfg.avg_non_ignore, ohem_min_kept=cfg.ohem_min_kept,
                     align_corners=cfg.align_corners, backend=cfg.backend, sgr=sgr,
                     sgr_loss_args=dict(top=cfg.sgr_top, rho=cfg.sgr_rho, beta=cfg.sgr_beta),
                     sgr_connectivity=cfg.sgr_connectivity)


def build_model(name: str, num_classes: int = 150, **overrides) -> Segmentor:
    """Build a zoo model: ``semask_swin_{t,s,b,l}_fpn``, ``swin_{t,s,b,l}_fpn``, ``semask_swin_{t,s,b,l}_upernet``,
    ``swin_{t,s,b,l}_upernet``, and the mask-classification ``[semask_]swin_{t,s,b,l}_{maskformer, mask2former,
    mask2former_fapn, mask2former_msfapn}`` (:mod:`semask_models.mask_zoo`; a ``MaskSegmentor``), each also with an
    ``_sgr`` suffix (or ``sgr=True``), and the Mix Transformer family ``[semask_]mit_b{0..5}_{segformer,fpn}``
    (:mod:`semask_models.mit_zoo`; its overrides are ``MitModelConfig`` fields). ``overrides`` are ModelConfig fields (e.g. ``drop_path_rate=0.0``,
    ``backend="triton"``, ``global_stages=()``). Build on the meta device with ``with torch.device("meta"):``.

    Example:
        >>> import semask_models
        >>> model = semask_models.build_model("semask_swin_t_fpn", num_classes=150)
    """
    return build_from_config(config_for(name, num_classes, **overrides))
