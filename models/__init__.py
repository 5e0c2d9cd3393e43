"""SeMask and Swin segmentation models, installed as the package ``semask_models``."""
from .zoo import ModelConfig, build_model, config_for, model_names

__all__ = ["ModelConfig", "build_model", "config_for", "model_names"]
