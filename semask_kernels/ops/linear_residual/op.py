"""``linear_residual``: custom op registration, fake kernel, autograd, FLOPs, dispatch and the public function."""
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


@torch.library.custom_op("semask_kernels::linear_residual", mutates_args=())
def _linear_residual(x: Tensor, weight: Tensor, bias: Optional[Tensor], residual: Tensor, scale: Optional[Tensor],
                     backend: str) -> Tensor:
    args = (x, weight, bias, residual, scale)
    return backends.get_backend(OP, backends.resolve(OP, backend, *args)).forward(*args)


@_linear_residual.register_fake
def _(x, weight, bias, residual, scale, backend):
    return residual.new_empty(residual.shape)


@torch.library.custom_op("semask_kernels::linear_residual_bwd", mutates_args=())
def _linear_residual_bwd(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], residual: Tensor,
                         scale: Optional[Tensor], backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dx, dweight, dbias, dresidual = backends.get_backend(OP, backend).backward(
        grad.contiguous(), x, weight, bias, residual, scale)
    return dx, dweight, (dbias if dbias is not None else x.new_empty(0)), dresidual


@_linear_residual_bwd.register_fake
def _(grad, x, weight, bias, residual, scale, backend):
    return torch.empty_like(x), torch.empty_like(weight), \
        (torch.empty_like(bias) if bias is not None else x.new_empty(0)), torch.empty_like(residual)


def _setup_context(ctx, inputs, output):
    x, weight, bias, residual, scale, backend = inputs
    ctx.save_for_backward(x, weight, bias, scale)
    ctx.backend = backends.resolve(OP, backend, x, weight, bias, residual, scale)


def _backward(ctx, grad):
    x, weight, bias, scale = ctx.saved_tensors
    # the backward reads the residual's shape only: the incoming gradient has it, the residual need not be kept
    dx, dweight, dbias, dresidual = _linear_residual_bwd(grad, x, weight, bias, grad, scale, ctx.backend)
    return dx, dweight, (dbias if bias is not None else None), dresidual, None, None


_linear_residual.register_autograd(_backward, setup_context=_setup_context)

# backward: dx and dweight, two GEMMs of the forward's size (the spec's default 2x)
register_flops(SPEC, torch.ops.semask_kernels.linear_residual, torch.ops.semask_kernels.linear_residual_bwd,
               lambda grad, *forward_args: forward_args)


def arguments(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, residual: Optional[Tensor] = None,
              scale: Optional[Tensor] = None) -> tuple:
    """The validated backend arguments ``(x, weight, bias, residual, scale)`` of a public call."""
    _checks.linear(x, weight, bias)
    if residual is None:
        raise ValueError("residual is required: the (..., out_features) stream the branch is added to")
    _checks.tensor("residual", residual)
    _checks.same_kind("x", x, "residual", residual)
    _checks.shape("residual", residual, (*x.shape[:-1], weight.shape[0]))
    if scale is not None:
        _checks.tensor("scale", scale, ndim=1)
        _checks.same_kind("x", x, "scale", scale)
        if x.dim() < 2:
            raise ValueError(f"scale is per sample along x's first dim, so x needs 2+ dims, got {tuple(x.shape)}")
        _checks.shape("scale", scale, (x.shape[0],))
    return x, weight, bias, residual, scale


def linear_residual(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *, residual: Tensor,
                    scale: Optional[Tensor] = None, backend: str = "auto") -> Tensor:
    """``residual + scale[b] · (x @ weightᵀ + bias)``: a Swin block's ``proj``/``fc2``, drop path and residual add.

    Args:
        x: (B, ..., K) fp16/bf16/fp32/fp64.
        weight: (N, K), ``nn.Linear``'s layout; bias: (N,) or None.
        residual: (B, ..., N), the stream the branch is added to.
        scale: (B,) or None, a per-sample factor of the branch (drop path: keep mask / keep probability). It gets
            no gradient.
        backend: "auto", "reference", "torch" or "triton" (see ``sk.available_backends()``).

    Returns:
        (B, ..., N) in x's dtype.

    Example:
        >>> import torch, semask_kernels as sk
        >>> x, r = torch.randn(2, 49, 384), torch.randn(2, 49, 96)
        >>> sk.linear_residual(x, torch.randn(96, 384), torch.zeros(96), residual=r).shape
        torch.Size([2, 49, 96])
    """
    args = arguments(x, weight, bias, residual, scale)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    return plain(*args) if plain is not None else _linear_residual(*args, name)
