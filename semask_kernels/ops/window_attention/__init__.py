"""The `window_attention` op: reference, backends and the public function (see op.py)."""
from .op import window_attention

__all__ = ["window_attention"]
