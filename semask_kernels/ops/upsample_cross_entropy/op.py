"""``upsample_cross_entropy``: custom op registration, fake kernel, autograd, FLOPs, dispatch, public function."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ... import _checks, backends
from .._spec import register_flops
from . import cuda, reference, torch_path, triton
from .spec import SPEC

OP = SPEC.name
backends.register_op(OP, SPEC.preference)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# every gpu test passed on an H200: benchmarks/results/gpu/2026-11-29-h200-99220a5-rerun
backends.register_module(OP, "cuda", cuda, verified=True)
# every gpu test passed on an H200: benchmarks/results/gpu/2026-11-29-h200-c29f02c
backends.register_module(OP, "triton", triton, verified=True)


@torch.library.custom_op("semask_kernels::upsample_cross_entropy", mutates_args=())
def _uce(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool, align_corners: bool,
         backend: str) -> Tensor:
    _checks.labels(target, logits.shape[1], ignore_index)  # in the kernel: it needs the values
    return backends.get_backend(OP, backend).forward(logits, target, ignore_index, avg_non_ignore, align_corners)


@_uce.register_fake
def _(logits, target, ignore_index, avg_non_ignore, align_corners, backend):
    return logits.new_empty(())


@torch.library.custom_op("semask_kernels::upsample_cross_entropy_bwd", mutates_args=())
def _uce_bwd(grad: Tensor, logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
             align_corners: bool, backend: str) -> Tensor:
    return backends.get_backend(OP, backend).backward(grad, logits, target, ignore_index, avg_non_ignore,
                                                      align_corners)


@_uce_bwd.register_fake
def _(grad, logits, target, ignore_index, avg_non_ignore, align_corners, backend):
    return torch.empty_like(logits)


class Options(NamedTuple):
    """The op's non-tensor arguments, as the custom ops take them after logits and target."""
    ignore_index: int
    avg_non_ignore: bool
    align_corners: bool
    backend: str


def _setup_context(ctx, inputs, output):
    logits, target, *options = inputs
    ctx.save_for_backward(logits, target)
    ctx.options = Options(*options)


def _backward(ctx, grad):
    logits, target = ctx.saved_tensors
    return (_uce_bwd(grad, logits, target, *ctx.options), None) + (None,) * len(Options._fields)  # target, options


_uce.register_autograd(_backward, setup_context=_setup_context)

register_flops(SPEC, torch.ops.semask_kernels.upsample_cross_entropy,
               torch.ops.semask_kernels.upsample_cross_entropy_bwd, lambda grad, *forward_args: forward_args)


def _validate(logits, target, ignore_index, avg_non_ignore, align_corners):
    _checks.tensor("logits", logits, ndim=4)
    _checks.tensor("target", target, ndim=3, floating=False)
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must have an integer dtype (class indices), got {target.dtype}")
    if target.device != logits.device:
        raise ValueError(f"target must be on the device of logits ({logits.device}), got {target.device}")
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"target must have the batch size of logits ({logits.shape[0]}), got shape "
                         f"{tuple(target.shape)}")
    if min(target.shape[1:]) < 1 or min(logits.shape[1:]) < 1:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must be non-empty")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    if not -2 ** 63 <= ignore_index < 2 ** 63:
        raise ValueError(f"ignore_index must fit in int64 (the labels' type), got {ignore_index}")
    for name, flag in (("avg_non_ignore", avg_non_ignore), ("align_corners", align_corners)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")


def arguments(logits: Tensor, target: Tensor, *, ignore_index: int = 255, avg_non_ignore: bool = True,
              align_corners: bool = False) -> tuple:
    """The validated backend arguments ``(logits, target, ignore_index, avg_non_ignore, align_corners)``."""
    _validate(logits, target, ignore_index, avg_non_ignore, align_corners)
    return logits, target, ignore_index, avg_non_ignore, align_corners


def upsample_cross_entropy(logits: Tensor, target: Tensor, *, ignore_index: int = 255, avg_non_ignore: bool = True,
                           align_corners: bool = False, backend: str = "auto") -> Tensor:
    """Bilinear resize of ``logits`` to the label size, then cross-entropy, as one op.

    Args:
        logits: (B, K, h, w), fp16/bf16/fp32/fp64.
        target: (B, H, W) integer class indices in [0, K) or ``ignore_index``, on the logits' device.
        ignore_index: label that contributes nothing (255 for ADE20K / Cityscapes / COCO-Stuff).
        avg_non_ignore: True divides by the non-ignored pixel count (torch's mean; 0 if all are ignored);
            False by all B·H·W pixels (mmseg 0.11, the official SeMask-FPN recipe).
        align_corners: of the bilinear resize.
        backend: "auto", "reference", "torch", "triton" or "cuda". Fused backends never form the (B, K, H, W) logits.

    Returns:
        A 0-dim tensor of the logits' dtype.

    Example:
        >>> import torch, semask_kernels as sk
        >>> logits, target = torch.randn(2, 19, 8, 8), torch.randint(0, 19, (2, 32, 32))
        >>> sk.upsample_cross_entropy(logits, target).shape
        torch.Size([])
    """
    args = arguments(logits, target, ignore_index=ignore_index, avg_non_ignore=avg_non_ignore,
                     align_corners=align_corners)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    if plain is not None and not torch.compiler.is_compiling():  # compiled: the custom op checks the labels
        return plain(*args)
    return _uce(*args, name)
