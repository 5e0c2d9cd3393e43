"""``linear_gelu``: custom op registration, fake kernel, autograd, FLOPs, dispatch and the public function.

The backward recomputes the pre-activation h = x·Wᵀ + b instead of saving it. Bytes, for fc1 (N = 4K, M rows,
element size e): saving h writes M·N·e in the forward and reads it in the backward, 2·M·4K·e = 8·M·K·e more
traffic (and M·4K·e more activation memory per block); recomputing reads x (M·K·e, already saved for dW) and W
once more, 1·M·K·e, and adds 2·M·N·K FLOPs to a GEMM whose K (96..768 in Swin) keeps it memory-bound on Hopper.
So the fused backward's first GEMM reads x, W and the incoming gradient and writes only dh = grad · gelu'(h).
"""
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


@torch.library.custom_op("semask_kernels::linear_gelu", mutates_args=())
def _linear_gelu(x: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str) -> Tensor:
    args = (x, weight, bias)
    return backends.get_backend(OP, backends.resolve(OP, backend, *args)).forward(*args)


@_linear_gelu.register_fake
def _(x, weight, bias, backend):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("semask_kernels::linear_gelu_bwd", mutates_args=())
def _linear_gelu_bwd(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                     backend: str) -> tuple[Tensor, Tensor, Tensor]:
    dx, dweight, dbias = backends.get_backend(OP, backend).backward(grad.contiguous(), x, weight, bias)
    return dx, dweight, (dbias if dbias is not None else x.new_empty(0))


@_linear_gelu_bwd.register_fake
def _(grad, x, weight, bias, backend):
    return torch.empty_like(x), torch.empty_like(weight), \
        (torch.empty_like(bias) if bias is not None else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, bias, backend = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.backend = backends.resolve(OP, backend, x, weight, bias)


def _backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    dx, dweight, dbias = _linear_gelu_bwd(grad, x, weight, bias, ctx.backend)
    return dx, dweight, (dbias if bias is not None else None), None


_linear_gelu.register_autograd(_backward, setup_context=_setup_context)

register_flops(SPEC, torch.ops.semask_kernels.linear_gelu, torch.ops.semask_kernels.linear_gelu_bwd,
               lambda grad, *forward_args: forward_args)


def arguments(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> tuple:
    """The validated backend arguments ``(x, weight, bias)`` of a public call."""
    _checks.linear(x, weight, bias)
    return x, weight, bias


def linear_gelu(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, *, backend: str = "auto") -> Tensor:
    """``gelu(x @ weightᵀ + bias)`` with the exact erf GELU: timm ``Mlp``'s ``fc1`` + ``act`` in one op.

    Args:
        x: (..., K) fp16/bf16/fp32/fp64.
        weight: (N, K), ``nn.Linear``'s layout; bias: (N,) or None. Same dtype and device as x.
        backend: "auto", "reference", "torch" or "triton" (see ``sk.available_backends()``).

    Returns:
        (..., N) in x's dtype. The fused backward recomputes the pre-activation (op.py's docstring says why).

    Example:
        >>> import torch, semask_kernels as sk
        >>> sk.linear_gelu(torch.randn(2, 49, 96), torch.randn(384, 96), torch.zeros(384)).shape
        torch.Size([2, 49, 384])
    """
    args = arguments(x, weight, bias)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    return plain(*args) if plain is not None else _linear_gelu(*args, name)
