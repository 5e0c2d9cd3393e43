"""The `semantic_attention` op: reference, backends and the public function (see op.py)."""
from .op import semantic_attention

__all__ = ["semantic_attention"]
