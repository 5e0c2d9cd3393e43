"""``semantic_attention``: custom op registration, fake kernel, autograd, FLOPs, dispatch, public function."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ... import _checks, backends
from .._autograd import empty_result
from .._spec import register_flops
from . import reference, torch_path, triton
from .spec import SPEC

OP = SPEC.name
backends.register_op(OP, SPEC.preference)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# every gpu test passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-99220a5-rerun), but triton.py changed
# since (Config built by keyword, keyword launches): to rerun on a GPU
backends.register_module(OP, "triton", triton, verified=False)


@torch.library.custom_op("semask_kernels::semantic_attention", mutates_args=())
def _semantic(s: Tensor, k: Tensor, v: Tensor, window_size: Sequence[int], pad_k: Optional[Tensor],
              pad_v: Optional[Tensor], backend: str) -> Tensor:
    return backends.get_backend(OP, backend).forward(s, k, v, list(window_size), pad_k, pad_v)


@_semantic.register_fake
def _(s, k, v, window_size, pad_k, pad_v, backend):
    return v.new_empty(v.shape)


@torch.library.custom_op("semask_kernels::semantic_attention_bwd", mutates_args=())
def _semantic_bwd(grad: Tensor, s: Tensor, k: Tensor, v: Tensor, window_size: Sequence[int],
                  pad_k: Optional[Tensor], pad_v: Optional[Tensor],
                  backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    ds, dk, dv, dpk, dpv = backends.get_backend(OP, backend).backward(
        grad.contiguous(), s, k, v, list(window_size), pad_k, pad_v)
    return ds, dk, dv, (dpk if dpk is not None else s.new_empty(0)), (dpv if dpv is not None else s.new_empty(0))


@_semantic_bwd.register_fake
def _(grad, s, k, v, window_size, pad_k, pad_v, backend):
    def like(t):
        return torch.empty_like(t) if t is not None else s.new_empty(0)
    return torch.empty_like(s), torch.empty_like(k), torch.empty_like(v), like(pad_k), like(pad_v)


def _setup_context(ctx, inputs, output):
    s, k, v, window_size, pad_k, pad_v, backend = inputs
    ctx.save_for_backward(s, k, v, pad_k, pad_v)
    ctx.window_size, ctx.backend = window_size, backend


def _backward(ctx, grad):
    s, k, v, pad_k, pad_v = ctx.saved_tensors
    ds, dk, dv, dpk, dpv = _semantic_bwd(grad, s, k, v, ctx.window_size, pad_k, pad_v, ctx.backend)
    return ds, dk, dv, None, (dpk if pad_k is not None else None), (dpv if pad_v is not None else None), None


_semantic.register_autograd(_backward, setup_context=_setup_context)


register_flops(SPEC, torch.ops.semask_kernels.semantic_attention, torch.ops.semask_kernels.semantic_attention_bwd,
               lambda grad, *forward_args: forward_args)


def _validate(s, k, v, window_size, pad_k, pad_v):
    _checks.tensor("s", s, ndim=4)
    _checks.tensor("k", k, ndim=4)
    _checks.tensor("v", v, ndim=4)
    _checks.same_kind("s", s, "k", k)
    _checks.same_kind("s", s, "v", v)
    if k.shape != s.shape:
        raise ValueError(f"k must have the shape of s (B, H, W, K) = {tuple(s.shape)}, got {tuple(k.shape)} "
                         "(K, the number of classes, must match)")
    if v.shape[:3] != s.shape[:3]:
        raise ValueError(f"v must have shape (B, H, W, C) with (B, H, W) = {tuple(s.shape[:3])}, "
                         f"got {tuple(v.shape)}")
    window = None if window_size is None else _checks.pair("window_size", window_size)
    for name, pad, width in (("pad_k", pad_k, s.shape[-1]), ("pad_v", pad_v, v.shape[-1])):
        if pad is not None:
            _checks.tensor(name, pad, ndim=1)
            _checks.same_kind("s", s, name, pad)
            _checks.shape(name, pad, (width,))
    return window


def arguments(s: Tensor, k: Tensor, v: Tensor, *, window_size=None, pad_k: Optional[Tensor] = None,
              pad_v: Optional[Tensor] = None) -> tuple:
    """The validated backend arguments ``(s, k, v, [M_h, M_w] or [], pad_k, pad_v)`` of a public call."""
    window = _validate(s, k, v, window_size, pad_k, pad_v)
    return s, k, v, list(window) if window else [], pad_k, pad_v


def semantic_attention(s: Tensor, k: Tensor, v: Tensor, *, window_size=None, pad_k: Optional[Tensor] = None,
                       pad_v: Optional[Tensor] = None, backend: str = "auto") -> Tensor:
    """SeMask's semantic attention: one head, no scaling, out = softmax(s·kᵀ)·v.

    Args:
        s: (B, H, W, K) semantic-prior logits (``mlp_cls_q`` of the normed map); k: (B, H, W, K) from
            ``mlp_cls_k``; v: (B, H, W, C) from ``mlp_v``. Same dtype and device.
        window_size: None for global attention over all H·W tokens, or an int / (M_h, M_w) for non-shifted
            windows of the bottom/right padded map.
        pad_k: (K,) key of padded tokens (``mlp_cls_k.bias``; zeros if None). pad_v: (C,) likewise for v.
        backend: "auto", "reference", "torch", "triton" or "cuda".

    Returns:
        (B, H, W, C). The caller applies ``mlp_res``, dropout and ``gamma·y + x``.

    Example:
        >>> import torch, semask_kernels as sk
        >>> s, k, v = torch.randn(1, 9, 10, 19), torch.randn(1, 9, 10, 19), torch.randn(1, 9, 10, 32)
        >>> sk.semantic_attention(s, k, v, window_size=7).shape
        torch.Size([1, 9, 10, 32])
    """
    args = arguments(s, k, v, window_size=window_size, pad_k=pad_k, pad_v=pad_v)
    if s.shape[0] * s.shape[1] * s.shape[2] == 0:  # B, H or W is 0: no tokens
        return empty_result((*s.shape[:3], v.shape[-1]), s, k, v, pad_k, pad_v)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    return plain(*args) if plain is not None else _semantic(*args, name)
