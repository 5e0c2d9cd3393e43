"""The relative-position bias table and index shared by the window-attention modules (timm's names)."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._windows import relative_position_index


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
