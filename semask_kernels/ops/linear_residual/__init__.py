"""The `linear_residual` op: reference, backends and the public function (see op.py)."""
from .op import linear_residual

__all__ = ["linear_residual"]
