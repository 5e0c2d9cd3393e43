"""The model zoo: names -> configurations -> segmentors.

``registry.py`` (names, :class:`ModelConfig`, ``build_model``), ``families.py`` (the list of families),
one module per family that owns its whole build (``swin.py``: Semantic-FPN / UperNet; ``swin_mask.py``:
MaskFormer / Mask2Former), ``checks.py`` (every ModelConfig field checked).
"""
from .checks import check_model_config
from .registry import ModelConfig, build_from_config, build_model, config_for, model_names, unchecked_config

__all__ = ["ModelConfig", "build_from_config", "build_model", "check_model_config", "config_for", "model_names",
           "unchecked_config"]
