"""``prior_map_decode``: custom op registration, fake kernel, autograd, FLOPs, dispatch, public function."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ... import _checks, backends
from .._autograd import empty_result
from .._spec import register_flops
from . import cuda, reference, torch_path, triton
from .spec import SPEC

OP = SPEC.name
backends.register_op(OP, SPEC.preference)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# every gpu test passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-99220a5-rerun), but its sources changed
# since (band weights moved to semask_kernels/kernels/bilinear_bands.py, csrc/common/limits.h): to rerun on a GPU
backends.register_module(OP, "cuda", cuda, verified=False)
# its gpu tests passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-c29f02c), but the kernel changed since
# (zero interpolation weights skipped, so a non-finite input reaches only its dependents): to rerun on a GPU
backends.register_module(OP, "triton", triton, verified=False)


def _pairs(flat: Sequence[int]) -> list[tuple[int, int]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


@torch.library.custom_op("semask_kernels::prior_map_decode", mutates_args=())
def _decode(maps: list[Tensor], align_corners: bool, backend: str) -> Tensor:
    return backends.get_backend(OP, backend).forward(list(maps), align_corners)


@_decode.register_fake
def _(maps, align_corners, backend):
    return maps[0].new_empty(maps[0].shape)


@torch.library.custom_op("semask_kernels::prior_map_decode_bwd", mutates_args=())
def _decode_bwd(grad: Tensor, sizes: Sequence[int], align_corners: bool, backend: str) -> list[Tensor]:
    return list(backends.get_backend(OP, backend).backward(grad.contiguous(), _pairs(sizes), align_corners))


@_decode_bwd.register_fake
def _(grad, sizes, align_corners, backend):
    b, k = grad.shape[:2]
    return [grad.new_empty(b, k, h, w) for h, w in _pairs(sizes)]


def _setup_context(ctx, inputs, output):
    maps, align_corners, backend = inputs
    ctx.sizes = [n for m in maps for n in m.shape[-2:]]
    ctx.align_corners, ctx.backend = align_corners, backend


def _backward(ctx, grad):
    return _decode_bwd(grad, ctx.sizes, ctx.align_corners, ctx.backend), None, None


_decode.register_autograd(_backward, setup_context=_setup_context)

register_flops(SPEC, torch.ops.semask_kernels.prior_map_decode, torch.ops.semask_kernels.prior_map_decode_bwd,
               lambda grad, sizes, *rest: ([(*grad[:2], h, w) for h, w in _pairs(sizes)],))


def _validate(maps, align_corners):
    if isinstance(maps, Tensor) or not isinstance(maps, (list, tuple)) or len(maps) == 0:
        raise TypeError(f"maps must be a non-empty list of (B, K, h_i, w_i) tensors, got {type(maps).__name__}")
    for i, m in enumerate(maps):
        _checks.tensor(f"maps[{i}]", m, ndim=4)
        _checks.same_kind("maps[0]", maps[0], f"maps[{i}]", m)
        if m.shape[:2] != maps[0].shape[:2]:
            raise ValueError(f"maps[{i}] must have (B, K) = {tuple(maps[0].shape[:2])} like maps[0], "
                             f"got {tuple(m.shape[:2])}")
        if min(m.shape[-2:]) < 1:
            raise ValueError(f"maps[{i}] must have a non-empty spatial size, got {tuple(m.shape)}")
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {align_corners!r}")


def arguments(maps: Sequence[Tensor], *, align_corners: bool = False) -> tuple:
    """The validated backend arguments ``([maps...], align_corners)`` of a public call."""
    _validate(maps, align_corners)
    return list(maps), align_corners


def prior_map_decode(maps: Sequence[Tensor], *, align_corners: bool = False, backend: str = "auto") -> Tensor:
    """The parameter-free semantic decoder of SeMask-FPN.

    Args:
        maps: the prior maps of the stages, maps[i] (B, K, H/4/2^i, W/4/2^i) (any sizes; any number >= 1),
            one dtype and device.
        align_corners: of every bilinear resize (False in the official SeMask-FPN head).
        backend: "auto", "reference", "torch", "triton" or "cuda".

    Returns:
        (B, K, h_0, w_0): maps[0] + Σ_{i≥1} up_i(maps[i]), up_i = i successive ×2 bilinear upsamplings, then a
        resize to maps[0]'s size when they differ (the official composite, not one ×2^i resize).

    Example:
        >>> import torch, semask_kernels as sk
        >>> maps = [torch.randn(2, 19, 32 // 2 ** i, 32 // 2 ** i) for i in range(4)]
        >>> sk.prior_map_decode(maps).shape
        torch.Size([2, 19, 32, 32])
    """
    maps, align_corners = arguments(maps, align_corners=align_corners)
    if maps[0].shape[0] * maps[0].shape[1] == 0:  # B or K is 0: nothing to decode
        return empty_result(maps[0].shape, *maps)
    name = backends.choose_backend(OP, backend, maps, align_corners)
    plain = backends.get_backend(OP, name).plain
    return plain(maps, align_corners) if plain is not None else _decode(maps, align_corners, name)
