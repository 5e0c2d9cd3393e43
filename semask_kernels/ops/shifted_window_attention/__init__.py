"""The `shifted_window_attention` op: reference, backends and the public function (see op.py)."""
from .op import shifted_window_attention

__all__ = ["shifted_window_attention"]
