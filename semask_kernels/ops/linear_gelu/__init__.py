"""The `linear_gelu` op: reference, backends and the public function (see op.py)."""
from .op import linear_gelu

__all__ = ["linear_gelu"]
