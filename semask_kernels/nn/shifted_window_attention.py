"""``ShiftedWindowAttention``: the attention of a Swin block on an NHWC map (qkv -> fused op -> proj)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.fx
from torch import Tensor, nn

from .. import _checks, backends
from ..ops.shifted_window_attention import shifted_window_attention, torch_path
from ..ops.shifted_window_attention.op import OP
from ._rel_pos import init_attention, resize_rel_pos


def _attend(qkv: Tensor, table: Tensor, qkv_bias: Optional[Tensor], num_heads: int, window_size: List[int],
            shift_size: List[int], scale: float, pad_order: str, mask_value: float, backend: str) -> Tensor:
    """The op as the module calls it: eagerly the public function (checks, backend choice, the fast torch path);
    under TorchScript, which compiles only the first branch, the registered op (it resolves "auto" itself)."""
    if torch.jit.is_scripting():
        # (output, statistics): the statistics are saved for the backward when a gradient is needed
        needs_grad = torch.is_grad_enabled() and (qkv.requires_grad or table.requires_grad)
        return torch.ops.semask_kernels.shifted_window_attention(qkv, table, qkv_bias, num_heads, window_size,
                                                                 shift_size, scale, pad_order, mask_value, backend,
                                                                 needs_grad)[0]
    return shifted_window_attention(qkv, table, num_heads=num_heads, window_size=window_size,
                                    shift_size=shift_size, scale=scale, qkv_bias=qkv_bias, pad_order=pad_order,
                                    mask_value=mask_value, backend=backend)


# torch.fx: a leaf node (the checks inside cannot take Proxies); a traced graph still scripts, as _attend does
torch.fx.wrap("_attend")


def runs_torch_path(x, attn_dim: int, table: Tensor, num_heads: int, window_size, shift_size, scale: float,
                    pad_order: str, mask_value: float, backend: str) -> bool:
    """Whether the op, fed the qkv of the normed map ``x`` (B, H, W, C), would run its plain-PyTorch path: then a
    module runs that path from x instead (``torch_path.from_input``: the qkv Linear on windowed rows, C channels
    gathered instead of 3C). False under FX tracing (the op stays one leaf node), ``torch.jit.trace`` (it records
    the registered op, as TorchScript runs it), autocast (the qkv dtype is autocast's) and on input the op rejects
    (it reports why)."""
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or not isinstance(x, Tensor) or x.dim() != 4 \
            or x.numel() == 0 \
            or not x.is_floating_point() or (torch.amp.is_autocast_available(x.device.type)
                                             and torch.is_autocast_enabled(x.device.type)):
        return False
    if any(not 0 <= s < w for s, w in zip(shift_size, window_size)):
        return False
    # a stand-in with the qkv's shape, dtype and device: what the backends' capability checks read
    like = x.new_empty(()).expand(*x.shape[:-1], 3 * attn_dim)
    try:
        name = backends.choose_backend(OP, backend, like, table, None, num_heads, list(window_size),
                                       [shift_size[0], shift_size[1]], scale, pad_order, mask_value)
    except (RuntimeError, ValueError, TypeError):  # the op path raises it with its reason
        return False
    return name == "torch"


class ShiftedWindowAttention(nn.Module):
    """(Shifted-)window attention of one Swin block: normed x (B, H, W, C) -> qkv Linear ->
    ``shifted_window_attention`` -> proj, with no roll, pad or partition copies outside the op.

    Parameter names are timm's ``WindowAttention`` ones (``qkv``, ``proj``, ``relative_position_bias_table``,
    non-persistent ``relative_position_index``), so ``block.attn`` of a timm Swin block can be replaced by this
    module without changing the state dict.

    Args:
        dim: channels C; num_heads: nH; head_dim: channels per head (dim // num_heads if None).
        window_size: int or (Wh, Ww); shift_size: int or (sh, sw), each < the window (0: W-MSA).
        qkv_bias: bias in the qkv Linear (padded tokens carry it). proj_drop: dropout after ``proj``.
        pad_order: "roll_then_pad" (timm) or "pad_then_roll" (official Swin segmentation / SeMask).
        mask_value: additive mask between shift regions (-100). backend: op backend.

    Example:
        >>> import torch, semask_kernels as sk
        >>> attn = sk.nn.ShiftedWindowAttention(96, num_heads=3, window_size=7, shift_size=3)
        >>> attn(torch.randn(2, 15, 20, 96)).shape
        torch.Size([2, 15, 20, 96])
    """

    def __init__(self, dim: int, num_heads: int, window_size=7, shift_size=0, head_dim: Optional[int] = None,
                 qkv_bias: bool = True, proj_drop: float = 0.0, pad_order: str = "roll_then_pad",
                 mask_value: float = -100.0, backend: str = "auto", device=None, dtype=None):
        super().__init__()
        init_attention(self, dim, num_heads, head_dim, window_size, qkv_bias, proj_drop, device, dtype)
        self.shift_size = _checks.pair("shift_size", shift_size, minimum=0)
        for axis, (s, w) in enumerate(zip(self.shift_size, self.window_size)):
            if s >= w:
                raise ValueError(f"shift_size must be < window_size on each axis, got shift_size={self.shift_size} "
                                 f"for window_size={self.window_size} (axis {axis})")
        self.pad_order = _checks.choice("pad_order", pad_order, ("roll_then_pad", "pad_then_roll"))
        self.mask_value = _checks.number("mask_value", mask_value)
        self.backend = _checks.backend("backend", backend)

    def set_window_size(self, window_size) -> None:
        resize_rel_pos(self, _checks.pair("window_size", window_size))

    def forward(self, x: Tensor, shift_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """x: (B, H, W, C) -> (B, H, W, C). ``shift_size`` overrides the module's (a timm block passes its own)."""
        shift = self.shift_size if shift_size is None else shift_size
        if torch.jit.is_scripting():
            qkv = self.qkv(x)
            out = self._through_op(qkv, self.qkv.bias, shift)
        elif self._plain_path(x, shift):
            out = torch_path.from_input(x, self.qkv, self.relative_position_bias_table, self.num_heads,
                                        self.window_size, (shift[0], shift[1]), self.scale, self.pad_order,
                                        self.mask_value)
        else:
            qkv = self.qkv(x)
            out = self._through_op(qkv, self._padding_qkv(x), shift)
        return self.proj_drop(self.proj(out))

    def _through_op(self, qkv: Tensor, bias: Optional[Tensor], shift: Tuple[int, int]) -> Tensor:
        """The op on the qkv map (whichever backend it picks); ``bias``: the q, k, v of padded tokens."""
        qkv_bias = None if bias is None else bias.to(qkv.dtype)
        return _attend(qkv, self.relative_position_bias_table.to(qkv.dtype), qkv_bias, self.num_heads,
                       [self.window_size[0], self.window_size[1]], [shift[0], shift[1]], self.scale, self.pad_order,
                       self.mask_value, self.backend)

    @torch.jit.unused
    def _padding_qkv(self, x: Tensor) -> Optional[Tensor]:
        """qkv of a zero (padded) input: the Linear's bias, or, for a wrapped, subclassed or hooked qkv (an adapter,
        a hook that edits its output), the module's output on 0, as the stock code's padded tokens get."""
        qkv = self.qkv
        if type(qkv) is nn.Linear and not (qkv._forward_hooks or qkv._forward_pre_hooks):
            return qkv.bias
        return self.qkv(x.new_zeros(1, x.shape[-1]))[0]

    @torch.jit.unused
    def _plain_path(self, x, shift) -> bool:
        return runs_torch_path(x, self.attn_dim, self.relative_position_bias_table, self.num_heads,
                               self.window_size, shift, self.scale, self.pad_order, self.mask_value, self.backend)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
                f"shift_size={self.shift_size}, pad_order={self.pad_order!r}, backend={self.backend!r}")
