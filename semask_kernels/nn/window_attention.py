"""``WindowAttention``: timm's ``WindowAttention`` module (same parameter and buffer names) on the fused op."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.fx
from torch import Tensor, nn

from .. import _checks
from ..ops.window_attention import window_attention
from ._rel_pos import init_attention, resize_rel_pos


def _attend(q: Tensor, k: Tensor, v: Tensor, table: Tensor, window_size: List[int], mask: Optional[Tensor],
            scale: float, backend: str) -> Tensor:
    """The op as the module calls it: eagerly the public function (checks, backend choice, the fast torch path);
    under TorchScript, which compiles only the first branch, the registered op (it resolves "auto" itself)."""
    if torch.jit.is_scripting():
        return torch.ops.semask_kernels.window_attention(q, k, v, table, window_size, mask, scale, backend)
    return window_attention(q, k, v, bias_table=table, window_size=window_size, mask=mask, scale=scale,
                            backend=backend)


# torch.fx: a leaf node (the checks inside cannot take Proxies); a traced graph still scripts, as _attend does
torch.fx.wrap("_attend")


class WindowAttention(nn.Module):
    """Multi-head attention inside already-partitioned windows with a relative-position bias.

    State-dict compatible with timm's ``WindowAttention``: ``qkv``, ``proj``, ``relative_position_bias_table``
    and the non-persistent ``relative_position_index``.

    Args:
        dim: channels C of the input; num_heads: nH; head_dim: channels per head (dim // num_heads if None).
        window_size: int or (Wh, Ww). qkv_bias: bias in the qkv Linear. proj_drop: dropout after ``proj``.
        attn_drop: must be 0: the fused ops have no attention dropout (every Swin recipe uses 0).
        backend: backend of the op ("auto", "reference", "triton", "cuda").

    Input (B_, N, C) windows and an optional (nW, N, N) additive mask; output (B_, N, C).

    Example:
        >>> import torch, semask_kernels as sk
        >>> attn = sk.nn.WindowAttention(96, num_heads=3, window_size=7)
        >>> attn(torch.randn(8, 49, 96)).shape
        torch.Size([8, 49, 96])
    """

    def __init__(self, dim: int, num_heads: int, head_dim: Optional[int] = None, window_size=7,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        if attn_drop:
            raise ValueError(f"attn_drop must be 0 (the fused ops have no attention dropout), got {attn_drop}")
        init_attention(self, dim, num_heads, head_dim, window_size, qkv_bias, proj_drop, device, dtype)
        self.window_area = self.window_size[0] * self.window_size[1]
        self.backend = _checks.backend("backend", backend)

    def set_window_size(self, window_size) -> None:
        resize_rel_pos(self, _checks.pair("window_size", window_size))
        self.window_area = self.window_size[0] * self.window_size[1]

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        b_, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b_, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        table = self.relative_position_bias_table.to(q.dtype)  # autocast gives bf16 q, the table stays fp32
        out = _attend(q, k, v, table, [self.window_size[0], self.window_size[1]],
                      None if mask is None else mask.to(q.dtype), self.scale, self.backend)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b_, n, -1)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, backend={self.backend!r}"
