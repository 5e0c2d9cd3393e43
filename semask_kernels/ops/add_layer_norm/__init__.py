"""The `add_layer_norm` op: reference, backends and the public function (see op.py)."""
from .op import add_layer_norm

__all__ = ["add_layer_norm"]
