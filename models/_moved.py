"""The import paths of modules that moved into the rooms of the package keep working.

``import semask_models.checkpoint`` gives the module :mod:`semask_models.checkpoints.training` itself (the same
object, so ``monkeypatch.setattr`` on it reaches the code), and so does the attribute ``semask_models.checkpoint``;
nothing is imported before it is asked for.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

PACKAGE = __name__.rpartition(".")[0]

MOVED = {
    "analyze": "engine.analyze",
    "atomic": "checkpoints.atomic",
    "builder": "engine.builder",
    "checkpoint": "checkpoints.training",
    "checksum": "checkpoints.checksum",
    "config": "engine.config",
    "config_checks": "engine.config_checks",
    "convert": "checkpoints.convert",
    "detectron2_checkpoint": "checkpoints.detectron2",
    "distributed": "engine.distributed",
    "evaluate": "engine.evaluate",
    "losses": "segmentors.losses",
    "mask_segmentor": "segmentors.mask_segmentor",
    "mask_semantic_head": "segmentors.mask_semantic_head",
    "mask_zoo": "zoo.swin_mask",
    "metrics": "engine.metrics",
    "model_checks": "zoo.checks",
    "optim": "engine.optim",
    "runlog": "engine.runlog",
    "segmentor": "segmentors.segmentor",
    "train": "engine.train",
    "workdir": "engine.workdir",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``semask_models.<old name>`` and loads it as the module it moved to."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        name = module.__name__.rpartition(".")[2]
        sys.modules[module.__name__] = importlib.import_module(f"{PACKAGE}.{MOVED[name]}")


def attribute(name: str):
    """``semask_models.<old name>`` as an attribute, imported on first use (the package's ``__getattr__``)."""
    if name not in MOVED:
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
    return importlib.import_module(f"{PACKAGE}.{name}")


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
