"""The `upsample_cross_entropy` op: reference, backends and the public function (see op.py)."""
from .op import upsample_cross_entropy

__all__ = ["upsample_cross_entropy"]
