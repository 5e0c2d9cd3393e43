"""The `ms_deform_attn` op: reference, backends and the public function (see op.py)."""
from .op import ms_deform_attn

__all__ = ["ms_deform_attn"]
