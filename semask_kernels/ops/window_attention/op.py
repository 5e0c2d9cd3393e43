"""``window_attention``: custom op registration, fake kernel, autograd, FLOPs, dispatch and the public function."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from ... import _checks, backends
from .._spec import register_flops
from . import reference, torch_path, triton
from .spec import SPEC

OP = SPEC.name
backends.register_op(OP, SPEC.preference)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# every gpu test passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-c29f02c), but its sources changed since:
# the kernels moved to semask_kernels/kernels/window_attention*.py and launch by keyword: to rerun on a GPU
backends.register_module(OP, "triton", triton, verified=False)


@torch.library.custom_op("semask_kernels::window_attention", mutates_args=())
def _window_attention(q: Tensor, k: Tensor, v: Tensor, bias_table: Optional[Tensor], window_size: Sequence[int],
                      mask: Optional[Tensor], scale: float, backend: str) -> Tensor:
    args = (q, k, v, bias_table, list(window_size), mask, scale)
    return backends.get_backend(OP, backends.resolve(OP, backend, *args)).forward(*args)


@_window_attention.register_fake
def _(q, k, v, bias_table, window_size, mask, scale, backend):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


@torch.library.custom_op("semask_kernels::window_attention_bwd", mutates_args=())
def _window_attention_bwd(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, bias_table: Optional[Tensor],
                          window_size: Sequence[int], mask: Optional[Tensor], scale: float,
                          backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dq, dk, dv, dtable = backends.get_backend(OP, backend).backward(
        grad.contiguous(), q, k, v, bias_table, list(window_size), mask, scale)
    return dq, dk, dv, (dtable if dtable is not None else q.new_empty(0))


@_window_attention_bwd.register_fake
def _(grad, q, k, v, bias_table, window_size, mask, scale, backend):
    table = torch.empty_like(bias_table) if bias_table is not None else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), table


def _setup_context(ctx, inputs, output):
    q, k, v, bias_table, window_size, mask, scale, backend = inputs
    ctx.save_for_backward(q, k, v, bias_table, mask)
    ctx.window_size, ctx.scale = window_size, scale
    ctx.backend = backends.resolve(OP, backend, q, k, v, bias_table, list(window_size), mask, scale)  # TorchScript


def _backward(ctx, grad):
    q, k, v, bias_table, mask = ctx.saved_tensors
    dq, dk, dv, dtable = _window_attention_bwd(grad, q, k, v, bias_table, ctx.window_size, mask, ctx.scale,
                                               ctx.backend)
    return dq, dk, dv, (dtable if bias_table is not None else None), None, None, None, None


_window_attention.register_autograd(_backward, setup_context=_setup_context)


# backward: dv, dp, dq, dk, four matmuls, twice the forward (the spec's default)
register_flops(SPEC, torch.ops.semask_kernels.window_attention, torch.ops.semask_kernels.window_attention_bwd,
               lambda grad, *forward_args: forward_args)


def _validate(q, k, v, bias_table, window_size, mask, scale):
    _checks.tensor("q", q, ndim=4)
    _checks.tensor("k", k, ndim=4)
    _checks.tensor("v", v, ndim=4)
    _checks.same_kind("q", q, "k", k)
    _checks.same_kind("q", q, "v", v)
    b_, heads, n, d = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must have shape (B_, nH, N, dv) = {tuple(q.shape[:3])} + (dv,), got {tuple(v.shape)}")
    if d == 0 and scale is None:
        raise ValueError(f"q and k have head dim d = 0 (shape {tuple(q.shape)}), so the default scale d ** -0.5 "
                         f"is undefined: give scale, or a head dim > 0")
    if bias_table is not None:
        _checks.tensor("bias_table", bias_table, ndim=2)
        _checks.same_kind("q", q, "bias_table", bias_table)
        if window_size is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"window_size is needed with bias_table when N={n} is not a square")
            window_size = (side, side)
        window_size = _checks.pair("window_size", window_size)
        if window_size[0] * window_size[1] != n:
            raise ValueError(f"window_size {window_size} has {window_size[0] * window_size[1]} tokens, "
                             f"but q has N={n}")
        expected = ((2 * window_size[0] - 1) * (2 * window_size[1] - 1), heads)
        _checks.shape("bias_table", bias_table, expected)
    else:
        window_size = _checks.pair("window_size", window_size) if window_size is not None else (n, 1)
    if mask is not None:
        _checks.tensor("mask", mask, ndim=3)
        _checks.same_kind("q", q, "mask", mask)
        if mask.shape[1:] != (n, n):
            raise ValueError(f"mask must have shape (nW, {n}, {n}), got {tuple(mask.shape)}")
        if mask.shape[0] == 0 or b_ % mask.shape[0]:
            raise ValueError(f"mask has nW={mask.shape[0]} windows, which must divide q's B_={b_}")
    scale = d ** -0.5 if scale is None else _checks.number("scale", scale)
    return window_size, scale


def arguments(q: Tensor, k: Tensor, v: Tensor, *, bias_table: Optional[Tensor] = None, window_size=None,
              mask: Optional[Tensor] = None, scale: Optional[float] = None) -> tuple:
    """The validated backend arguments ``(q, k, v, bias_table, [Wh, Ww], mask, scale)`` of a public call."""
    window_size, scale = _validate(q, k, v, bias_table, window_size, mask, scale)
    return q, k, v, bias_table, list(window_size), mask, scale


def window_attention(q: Tensor, k: Tensor, v: Tensor, *, bias_table: Optional[Tensor] = None,
                     window_size=None, mask: Optional[Tensor] = None, scale: Optional[float] = None,
                     backend: str = "auto") -> Tensor:
    """Attention inside already-partitioned windows (timm ``WindowAttention``'s inner math).

    Args:
        q, k: (B_, nH, N, d); v: (B_, nH, N, dv). Same dtype (fp16/bf16/fp32/fp64) and device.
        bias_table: optional ((2Wh-1)(2Ww-1), nH) relative-position table; bias[h, i, j] is gathered from it by
            the coordinates of tokens i and j in the (Wh, Ww) window.
        window_size: int or (Wh, Ww) with Wh·Ww = N; inferred as a square when None.
        mask: optional additive (nW, N, N) mask; window b uses mask[b mod nW]. It gets no gradient.
        scale: multiplies q before the product; defaults to d ** -0.5.
        backend: "auto", "reference", "torch", "triton" or "cuda" (see ``sk.available_backends()``).

    Returns:
        (B_, nH, N, dv): softmax(scale·q·kᵀ + bias + mask)·v.

    Example:
        >>> import torch, semask_kernels as sk
        >>> q = k = v = torch.randn(4, 3, 49, 32)
        >>> sk.window_attention(q, k, v, bias_table=torch.zeros(169, 3), window_size=7).shape
        torch.Size([4, 3, 49, 32])
    """
    args = arguments(q, k, v, bias_table=bias_table, window_size=window_size, mask=mask, scale=scale)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    return plain(*args) if plain is not None else _window_attention(*args, name)
