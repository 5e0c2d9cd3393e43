"""The SeMask semantic layer of a stage: LayerNorm, then one SemanticAttention (official ``SWSeMaskBlock`` /
``SeMaskBlock``): windowed on the zero-padded normed map, or global."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

import semask_kernels as sk


class SemanticLayer(nn.Module):
    """``norm1`` then the ``depth`` (N_S, official ``num_sem_blocks``) blocks of ``class_injection`` in turn.
    Returns (S of the last block (B, H, W, K), its output: LN(x) + gamma·y for N_S = 1).

    No FFN and no drop path, as officially; the residual adds to the normed input. Only the last block's S is
    returned (and supervised), as officially.
    """

    def __init__(self, dim: int, num_classes: int, window_size: Optional[int], backend: str = "auto",
                 depth: int = 1):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth (N_S, SemanticAttention blocks per stage) must be an integer >= 1, got {depth!r}")
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.class_injection = nn.ModuleList([
            sk.nn.SemanticAttention(dim, num_classes, window_size=window_size, backend=backend)
            for _ in range(depth)])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm1(x)
        s = None
        for block in self.class_injection:
            s, x = block(x)
        return s, x
