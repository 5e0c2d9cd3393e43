"""The zoo's model families, in the order of ``model_names()``. A family is a module that owns the whole build of
its names: ``HEADS`` (the ``ModelConfig.head`` values it builds), ``names()`` (its names without the ``_sgr``
suffix), ``fields(name)`` (the ModelConfig fields a name fixes), ``check(cfg, prefix, error)`` (the fields that must
agree with each other in that family) and ``build(cfg)`` (the segmentor). A new family is a new module listed here.
"""
from __future__ import annotations

from types import ModuleType

from . import swin, swin_mask

FAMILIES: tuple[ModuleType, ...] = (swin, swin_mask)


def heads() -> tuple[str, ...]:
    """Every ``ModelConfig.head`` a family builds."""
    return tuple(head for family in FAMILIES for head in family.HEADS)


def family_of_head(head: str) -> ModuleType:
    for family in FAMILIES:
        if head in family.HEADS:
            return family
    raise ValueError(f"head must be one of {list(heads())}, got {head!r}")


def family_of_name(name: str) -> ModuleType:
    """The family of ``name`` (without the ``_sgr`` suffix)."""
    for family in FAMILIES:
        if name in family.names():
            return family
    raise ValueError(f"unknown model {name!r}")
