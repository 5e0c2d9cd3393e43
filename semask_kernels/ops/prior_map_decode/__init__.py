"""The `prior_map_decode` op: reference, backends and the public function (see op.py)."""
from .op import prior_map_decode

__all__ = ["prior_map_decode"]
