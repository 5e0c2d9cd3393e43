"""Drop-in integrations with third-party model libraries (timm)."""
from .timm import patch_timm_swin

__all__ = ["patch_timm_swin"]
