"""``qkv_linear``: three separate q, k, v Linears whose outputs land side by side in one (…, 3C) tensor, the input
layout of ``shifted_window_attention``, with no concatenation copy of the activations or of the weights.

Models that keep q, k and v as separate parameters (Hugging Face Swin, MaskFormer's Swin) would otherwise need
``torch.cat`` of the three outputs (one more read and write of the whole (…, 3C) tensor) or a per-forward
concatenation of the three weights (3C·C per call, larger than the activations at Swin's last stages). Here each
GEMM writes straight into its third of the output (a strided view with row stride 3C, which BLAS takes as its
leading dimension), and the backward reads the three gradient thirds in place.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


class _QKVLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, wq, bq, wk, bk, wv, bv):
        rows = x.reshape(-1, x.shape[-1])
        c = wq.shape[0]
        out = rows.new_empty(rows.shape[0], 3 * c)
        for i, (w, b) in enumerate(((wq, bq), (wk, bk), (wv, bv))):
            part = out[:, i * c:(i + 1) * c]
            if b is None:
                torch.mm(rows, w.t(), out=part)
            else:
                torch.addmm(b, rows, w.t(), out=part)
        ctx.save_for_backward(rows, wq, wk, wv)
        ctx.x_shape = x.shape
        return out.view(*x.shape[:-1], 3 * c)

    @staticmethod
    def backward(ctx, grad):
        rows, wq, wk, wv = ctx.saved_tensors
        c = wq.shape[0]
        g = grad.reshape(-1, 3 * c)
        parts = [g[:, i * c:(i + 1) * c] for i in range(3)]
        need = ctx.needs_input_grad
        dx = None
        if need[0]:
            dx = parts[0] @ wq
            dx.addmm_(parts[1], wk).addmm_(parts[2], wv)
            dx = dx.view(ctx.x_shape)
        grads = []
        for i in range(3):
            grads.append(parts[i].t() @ rows if need[1 + 2 * i] else None)
            grads.append(parts[i].sum(0) if need[2 + 2 * i] else None)
        return (dx, *grads)


def qkv_linear(x: Tensor, q_weight: Tensor, q_bias: Optional[Tensor], k_weight: Tensor, k_bias: Optional[Tensor],
               v_weight: Tensor, v_bias: Optional[Tensor]) -> Tensor:
    """``cat([F.linear(x, q_weight, q_bias), F.linear(x, k_weight, k_bias), F.linear(x, v_weight, v_bias)], -1)``
    without the concatenation.

    Args:
        x: (…, C_in). q/k/v weights: (C, C_in) each, biases (C,) or None (all or none), x's dtype and device.

    Returns:
        (…, 3C), laid out [q | k | v]. Under autocast the inputs are cast as autocast casts ``F.linear``'s.
        TorchScript and ``torch.compile`` get the plain three Linears and ``torch.cat`` (the compiler can place the
        three outputs itself).

    Example:
        >>> import torch
        >>> from semask_kernels.nn.qkv_linear import qkv_linear
        >>> w, b = torch.randn(8, 4), torch.randn(8)
        >>> qkv_linear(torch.randn(2, 5, 4), w, b, w, b, w, b).shape
        torch.Size([2, 5, 24])
    """
    if torch.jit.is_scripting() or torch.compiler.is_compiling():
        return torch.cat([F.linear(x, q_weight, q_bias), F.linear(x, k_weight, k_bias),
                          F.linear(x, v_weight, v_bias)], -1)
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        args = [t.to(dtype) if t is not None and t.dtype != torch.float64 else t  # autocast leaves fp64 alone
                for t in (x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias)]
        with torch.autocast(device, enabled=False):
            return _QKVLinear.apply(*args)
    return _QKVLinear.apply(x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias)
