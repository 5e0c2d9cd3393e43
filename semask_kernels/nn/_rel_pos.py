"""What the window-attention modules share: timm's parameter layout (qkv, proj, relative-position table and
index) and the table resize of ``set_window_size``."""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..ops._windows import relative_position_index


def init_attention(module: nn.Module, dim: int, num_heads: int, head_dim, window_size, qkv_bias: bool,
                   proj_drop: float, device=None, dtype=None) -> None:
    """Give ``module`` timm ``WindowAttention``'s attributes and parameters: ``dim``, ``num_heads``,
    ``window_size``, ``attn_dim``, ``scale``, ``relative_position_bias_table`` (+ index buffer), ``qkv``, ``proj``,
    ``proj_drop``."""
    module.dim = _checks.positive_int("dim", dim)
    module.num_heads = _checks.positive_int("num_heads", num_heads)
    module.window_size = _checks.pair("window_size", window_size)
    head_dim = head_dim or dim // num_heads
    attn_dim = head_dim * num_heads
    module.attn_dim = attn_dim  # nH·d: q, k, v channels each
    module.scale = head_dim ** -0.5
    init_rel_pos(module, module.window_size, num_heads, device=device, dtype=dtype)
    module.qkv = nn.Linear(dim, attn_dim * 3, bias=qkv_bias, device=device, dtype=dtype)
    module.proj = nn.Linear(attn_dim, dim, device=device, dtype=dtype)
    module.proj_drop = nn.Dropout(proj_drop)


def init_rel_pos(module: nn.Module, window_size: tuple[int, int], num_heads: int, device=None, dtype=None) -> None:
    """Give ``module`` timm's ``relative_position_bias_table`` (trunc-normal std 0.02) and its non-persistent
    ``relative_position_index`` buffer."""
    wh, ww = window_size
    module.relative_position_bias_table = nn.Parameter(
        torch.empty((2 * wh - 1) * (2 * ww - 1), num_heads, device=device, dtype=dtype))
    nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
    module.register_buffer("relative_position_index", relative_position_index(window_size, device=device),
                           persistent=False)


def resize_rel_pos(module: nn.Module, window_size: tuple[int, int]) -> None:
    """Change the window of ``module``, resizing its table as timm's ``set_window_size`` does (needs timm)."""
    from timm.layers import resize_rel_pos_bias_table

    if tuple(window_size) == tuple(module.window_size):
        return
    old = tuple(module.window_size)
    wh, ww = window_size
    table = module.relative_position_bias_table
    with torch.no_grad():
        new = resize_rel_pos_bias_table(table, new_window_size=tuple(window_size),
                                        new_bias_shape=((2 * wh - 1) * (2 * ww - 1), table.shape[1]),
                                        old_window_size=old)
    module.relative_position_bias_table = nn.Parameter(new, requires_grad=table.requires_grad)
    module.register_buffer("relative_position_index", relative_position_index(window_size, device=table.device),
                           persistent=False)
    module.window_size = tuple(window_size)
