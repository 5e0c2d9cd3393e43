"""Drop-in integrations with third-party model libraries (timm, Hugging Face transformers)."""
from .timm import patch_timm_swin
from .transformers import patch_hf_swin

__all__ = ["patch_hf_swin", "patch_timm_swin"]
