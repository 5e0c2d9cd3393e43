"""SeMask and Swin segmentation models, installed as the package ``semask_models``.

Rooms: ``zoo/`` (names -> configs -> models), ``segmentors/``, ``backbones/``, ``heads/``, ``sgr/`` (what a model
is), ``checkpoints/`` (how weights come and go), ``data/`` and ``engine/`` (how a run is driven), ``cli.py`` (the
commands). The public paths are listed in the README ("Public import paths").
"""
from . import _moved
from .zoo import ModelConfig, build_model, config_for, model_names

_moved.install()


def __getattr__(name: str):  # ``semask_models.convert`` and the other moved modules, without an import first
    return _moved.attribute(name)


__all__ = ["ModelConfig", "build_model", "config_for", "model_names"]
