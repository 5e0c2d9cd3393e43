"""The zoo's model families, in the order of ``model_names()``. A family is a module that owns the whole build of
its names: ``HEADS`` (the ``ModelConfig.head`` values it builds), ``names()`` (its names without the ``_sgr``
suffix), ``fields(name)`` (the ModelConfig fields a name fixes), ``check(cfg, prefix, error)`` (the fields that must
agree with each other in that family) and ``build(cfg)`` (the segmentor). A new family is a new module listed here.

A family may own its configuration dataclass instead of :class:`~semask_models.zoo.registry.ModelConfig`: it sets
``CONFIG`` (the dataclass) and ``config(name, num_classes, **overrides)``, its ``check`` then checks every field,
its names take no ``_sgr`` suffix, and its ``HEADS`` are values of its own config (``mit``: MiT / SegFormer).
``heads()`` and ``family_of_head`` are about ``ModelConfig.head``; :func:`family_of_config` finds any config's family.
"""
from __future__ import annotations

from types import ModuleType

from . import mit, swin, swin_mask

FAMILIES: tuple[ModuleType, ...] = (swin, swin_mask, mit)


def owns_config(family: ModuleType) -> bool:
    return getattr(family, "CONFIG", None) is not None


def heads() -> tuple[str, ...]:
    """Every ``ModelConfig.head`` a family builds."""
    return tuple(head for family in FAMILIES if not owns_config(family) for head in family.HEADS)


def own_config_family(cfg) -> ModuleType | None:
    """The family whose own configuration dataclass ``cfg`` is, or None for a ``ModelConfig``."""
    return next((family for family in FAMILIES if owns_config(family) and isinstance(cfg, family.CONFIG)), None)


def family_of_config(cfg) -> ModuleType:
    """The family that builds ``cfg``: by its type for a family's own config, else by ``cfg.head``."""
    return own_config_family(cfg) or family_of_head(cfg.head)


def family_of_head(head: str) -> ModuleType:
    for family in FAMILIES:
        if not owns_config(family) and head in family.HEADS:
            return family
    raise ValueError(f"head must be one of {list(heads())}, got {head!r}")


def family_of_name(name: str) -> ModuleType:
    """The family of ``name`` (without the ``_sgr`` suffix)."""
    for family in FAMILIES:
        if name in family.names():
            return family
    raise ValueError(f"unknown model {name!r}")
