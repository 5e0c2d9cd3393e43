"""``add_layer_norm``: custom op registration, fake kernel, autograd, FLOPs, dispatch and the public function."""
from __future__ import annotations

from typing import Optional

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
# no GPU run yet: .ci/gpu-check all runs its gpu tests
backends.register_module(OP, "triton", triton, verified=False)


@torch.library.custom_op("semask_kernels::add_layer_norm", mutates_args=())
def _add_layer_norm(x: Tensor, residual: Tensor, weight: Tensor, bias: Optional[Tensor], eps: float,
                    backend: str) -> tuple[Tensor, Tensor]:
    args = (x, residual, weight, bias, eps)
    s, y = backends.get_backend(OP, backends.resolve(OP, backend, *args)).forward(*args)
    return s.contiguous(), y.contiguous()


@_add_layer_norm.register_fake
def _(x, residual, weight, bias, eps, backend):
    return x.new_empty(x.shape), x.new_empty(x.shape)


@torch.library.custom_op("semask_kernels::add_layer_norm_bwd", mutates_args=())
def _add_layer_norm_bwd(grad_sum: Tensor, grad_normed: Tensor, x: Tensor, residual: Tensor, weight: Tensor,
                        bias: Optional[Tensor], eps: float, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dx, dresidual, dweight, dbias = backends.get_backend(OP, backend).backward(
        grad_sum.contiguous(), grad_normed.contiguous(), x, residual, weight, bias, eps)
    return dx, dresidual, dweight, (dbias if dbias is not None else x.new_empty(0))


@_add_layer_norm_bwd.register_fake
def _(grad_sum, grad_normed, x, residual, weight, bias, eps, backend):
    return torch.empty_like(x), torch.empty_like(residual), torch.empty_like(weight), \
        (torch.empty_like(bias) if bias is not None else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, residual, weight, bias, eps, backend = inputs
    ctx.save_for_backward(x, residual, weight, bias)  # the backward recomputes s and the statistics
    ctx.eps = eps
    ctx.backend = backends.resolve(OP, backend, x, residual, weight, bias, eps)


def _backward(ctx, grad_sum, grad_normed):
    x, residual, weight, bias = ctx.saved_tensors
    dx, dresidual, dweight, dbias = _add_layer_norm_bwd(grad_sum, grad_normed, x, residual, weight, bias, ctx.eps,
                                                        ctx.backend)
    return dx, dresidual, dweight, (dbias if bias is not None else None), None, None


_add_layer_norm.register_autograd(_backward, setup_context=_setup_context)

register_flops(SPEC, torch.ops.semask_kernels.add_layer_norm, torch.ops.semask_kernels.add_layer_norm_bwd,
               lambda grad_sum, grad_normed, *forward_args: forward_args)


def arguments(x: Tensor, residual: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
              eps: float = 1e-5) -> tuple:
    """The validated backend arguments ``(x, residual, weight, bias, eps)`` of a public call."""
    _checks.tensor("x", x)
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (..., C), got a 0-dim tensor")
    _checks.tensor("residual", residual)
    _checks.same_kind("x", x, "residual", residual)
    _checks.shape("residual", residual, x.shape)
    _checks.tensor("weight", weight, ndim=1)
    _checks.same_kind("x", x, "weight", weight)
    _checks.shape("weight", weight, (x.shape[-1],))
    if bias is not None:
        _checks.tensor("bias", bias, ndim=1)
        _checks.same_kind("x", x, "bias", bias)
        _checks.shape("bias", bias, (x.shape[-1],))
    eps = _checks.number("eps", eps)
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return x, residual, weight, bias, eps


def add_layer_norm(x: Tensor, residual: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *,
                   eps: float = 1e-5, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """``s = x + residual`` and ``LayerNorm(s)`` over the last dim in one pass: a Swin block's residual add and the
    norm that reads the new stream (``norm2`` after the attention branch, the next block's ``norm1``).

    Args:
        x, residual: (..., C) fp16/bf16/fp32/fp64, same shape.
        weight: (C,); bias: (C,) or None: the LayerNorm's affine parameters. eps: > 0 (LayerNorm's 1e-5).
        backend: "auto", "reference", "torch" or "triton" (see ``sk.available_backends()``).

    Returns:
        (s, y): the new residual stream and its LayerNorm, both (..., C) in x's dtype.

    Example:
        >>> import torch, semask_kernels as sk
        >>> s, y = sk.add_layer_norm(torch.randn(2, 49, 96), torch.randn(2, 49, 96), torch.ones(96), torch.zeros(96))
        >>> s.shape, y.shape
        (torch.Size([2, 49, 96]), torch.Size([2, 49, 96]))
    """
    args = arguments(x, residual, weight, bias, eps)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    return plain(*args) if plain is not None else _add_layer_norm(*args, name)
