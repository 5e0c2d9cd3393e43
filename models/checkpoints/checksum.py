"""Content checksums of the checkpoints this package writes, so that a corrupted file (zeroed or flipped bytes
inside a tensor, which both safetensors and ``torch.load`` read without complaint) is refused on load.

SHA-256 over a canonical walk of the object: every tensor's dtype, shape and raw bytes, every plain value's
``repr``, dict entries in a fixed key order, lists and tuples alike (a ``torch.load`` round trip may turn one into
the other). The digest depends only on the content, never on the file layout.

Example:
    >>> import torch
    >>> a = checksum({"w": torch.ones(2), "iter": 3})
    >>> a == checksum({"iter": 3, "w": torch.ones(2)}), a == checksum({"w": torch.zeros(2), "iter": 3})
    (True, False)
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def _update(h, obj) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"t{t.dtype}{tuple(obj.shape)}".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(f"d{len(obj)}".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _update(h, key)
            _update(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"l{len(obj)}".encode())
        for item in obj:
            _update(h, item)
    else:
        h.update(f"v{type(obj).__name__}:{obj!r};".encode())


def checksum(obj) -> str:
    """Hex SHA-256 of ``obj`` (tensors, dicts, lists, tuples and plain values, nested)."""
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()
