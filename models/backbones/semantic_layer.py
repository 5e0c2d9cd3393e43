"""The SeMask semantic layer of a stage: LayerNorm, then one SemanticAttention (official ``SWSeMaskBlock`` /
``SeMaskBlock``): windowed on the zero-padded normed map, or global."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

import semask_kernels as sk


class SemanticLayer(nn.Module):
    """``norm1`` then ``class_injection[0]`` (N_S = 1). Returns (S (B, H, W, K), LN(x) + gamma·y).

    No FFN and no drop path, as officially; the residual adds to the normed input.
    """

    def __init__(self, dim: int, num_classes: int, window_size: Optional[int], backend: str = "auto"):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.class_injection = nn.ModuleList([
            sk.nn.SemanticAttention(dim, num_classes, window_size=window_size, backend=backend)])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm1(x)
        s = None
        for block in self.class_injection:
            s, x = block(x)
        return s, x
