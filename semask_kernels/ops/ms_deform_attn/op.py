"""``ms_deform_attn``: custom op registration, fake kernel, autograd, FLOPs, dispatch, public function."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from ... import _checks, backends
from .._autograd import empty_result
from .._spec import register_flops
from . import reference, torch_path, triton
from .levels import level_shapes
from .spec import SPEC

OP = SPEC.name
PADDING_MODES = ("zeros", "border", "reflection")
INDEX_DTYPES = (torch.int32, torch.int64)
backends.register_op(OP, SPEC.preference)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# its gpu tests have not run on a GPU yet (tested under the interpreter only): auto does not pick it
backends.register_module(OP, "triton", triton, verified=False)


@torch.library.custom_op("semask_kernels::ms_deform_attn", mutates_args=())
def _msda(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
          attention_weights: Tensor, align_corners: bool, padding_mode: str, backend: str) -> Tensor:
    args = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
            padding_mode)
    return backends.get_backend(OP, backends.resolve(OP, backend, *args)).forward(*args)


@_msda.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners, padding_mode,
      backend):
    b, lq, heads = sampling_locations.shape[:3]
    return value.new_empty((b, lq, heads * value.shape[-1]))


@torch.library.custom_op("semask_kernels::ms_deform_attn_bwd", mutates_args=())
def _msda_bwd(grad: Tensor, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
              sampling_locations: Tensor, attention_weights: Tensor, align_corners: bool, padding_mode: str,
              backend: str) -> tuple[Tensor, Tensor, Tensor]:
    dvalue, dloc, dweights = backends.get_backend(OP, backend).backward(
        grad.contiguous(), value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
        align_corners, padding_mode)
    # contiguous, as the fake kernel promises (autograd of grid_sample gives permuted strides)
    return dvalue.contiguous(), dloc.contiguous(), dweights.contiguous()


@_msda_bwd.register_fake
def _(grad, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
      padding_mode, backend):
    return (value.new_empty(value.shape), sampling_locations.new_empty(sampling_locations.shape),
            attention_weights.new_empty(attention_weights.shape))


def _setup_context(ctx, inputs, output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners, padding_mode, \
        backend = inputs
    ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    args = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
            padding_mode)
    ctx.rest = (align_corners, padding_mode, backends.resolve(OP, backend, *args))  # "auto" from TorchScript/FX


def _backward(ctx, grad):
    dvalue, dloc, dweights = _msda_bwd(grad, *ctx.saved_tensors, *ctx.rest)
    return dvalue, None, None, dloc, dweights, None, None, None


_msda.register_autograd(_backward, setup_context=_setup_context)


register_flops(SPEC, torch.ops.semask_kernels.ms_deform_attn, torch.ops.semask_kernels.ms_deform_attn_bwd,
               lambda grad, *fwd: fwd)


def _index_tensor(name: str, t, value: Tensor, shape: tuple[int, ...]) -> Tensor:
    """An integer tensor on value's device (a nested sequence of ints becomes one, int64)."""
    if not isinstance(t, Tensor):
        try:
            t = torch.tensor(t, dtype=torch.int64, device=value.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be an integer tensor or a sequence of ints of shape {shape}, "
                            f"got {t!r}") from exc
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name} must have an integer dtype {INDEX_DTYPES}, got {t.dtype}")
    if t.device != value.device:
        raise ValueError(f"{name} must be on the same device as value ({value.device}), got {t.device}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    return t


def arguments(value: Tensor, spatial_shapes, level_start_index, sampling_locations: Tensor,
              attention_weights: Tensor, *, align_corners: bool = False, padding_mode: str = "zeros") -> tuple:
    """The validated backend arguments ``(value, spatial_shapes, level_start_index, sampling_locations,
    attention_weights, align_corners, padding_mode)`` of a public call, the level table as integer tensors on
    value's device (its values are checked by the backends, on the host: see levels.py)."""
    _checks.tensor("value", value, ndim=4)
    _checks.tensor("sampling_locations", sampling_locations, ndim=6)
    _checks.same_kind("value", value, "sampling_locations", sampling_locations)
    _checks.tensor("attention_weights", attention_weights, ndim=5)
    _checks.same_kind("value", value, "attention_weights", attention_weights)
    b, _, heads, _ = value.shape
    lb, lq, lheads, levels, points, xy = sampling_locations.shape
    if (lb, lheads, xy) != (b, heads, 2):
        raise ValueError(f"sampling_locations must be (B, Lq, nH, nL, nP, 2) with B = {b} and nH = {heads} of "
                         f"value (B, S, nH, d), got {tuple(sampling_locations.shape)}")
    _checks.shape("attention_weights", attention_weights, (b, lq, heads, levels, points))
    spatial_shapes = _index_tensor("spatial_shapes", spatial_shapes, value, (levels, 2))
    level_start_index = _index_tensor("level_start_index", level_start_index, value, (levels,))
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {align_corners!r}")
    _checks.choice("padding_mode", padding_mode, PADDING_MODES)
    return (value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
            padding_mode)


def ms_deform_attn(value: Tensor, spatial_shapes: Union[Tensor, Sequence[Sequence[int]]],
                   level_start_index: Union[Tensor, Sequence[int]], sampling_locations: Tensor,
                   attention_weights: Tensor, *, align_corners: bool = False, padding_mode: str = "zeros",
                   backend: str = "auto") -> Tensor:
    """Multi-scale deformable attention (Deformable DETR; the pixel decoder of Mask2Former), as one op.

    Args:
        value: (B, S, nH, d), the nL levels' value maps concatenated along S, each row-major (H_l·W_l tokens).
            fp16/bf16/fp32/fp64.
        spatial_shapes: (nL, 2) integer tensor of (H_l, W_l) on value's device, or a sequence of (H, W) pairs.
        level_start_index: (nL,) integer tensor (or sequence): where each level starts in S, i.e. the running
            sum of H_l·W_l from 0. Checked against spatial_shapes and S (an error, never an out-of-bounds read).
        sampling_locations: (B, Lq, nH, nL, nP, 2), (x, y) in [0, 1] over each level (0 and 1 are the map's
            outer edges with align_corners=False). Same dtype and device as value.
        attention_weights: (B, Lq, nH, nL, nP), the weight of each sample (Deformable DETR softmaxes them over
            nL·nP before the op; the op does not). Same dtype and device as value.
        align_corners: of the bilinear sampling, as in ``F.grid_sample`` (False in Deformable DETR).
        padding_mode: what lies outside a map: "zeros" (Deformable DETR), "border" or "reflection", as in
            ``F.grid_sample``.
        backend: "auto", "reference", "torch", "triton" or "cuda".

    Returns:
        (B, Lq, nH·d) in value's dtype: out[b, q, h·d:(h+1)·d] = Σ_l Σ_p w · bilinear(value_l[b, :, h], loc).
        Gradients flow to value, sampling_locations and attention_weights.

    Non-finite inputs, the same on every backend: a sample whose location has a NaN or ±inf coordinate is
    dropped, whatever its weight and the padding mode (it adds nothing, and its location and weight get zero
    gradients), as the original CUDA op skips it. Every other sample adds w · tap with the bilinear tap formed
    first: a weight of ±inf gives ±inf·tap (NaN where the tap is 0), a NaN weight gives NaN for its (b, q, h).

    Example:
        >>> import torch, semask_kernels as sk
        >>> shapes = [(8, 8), (4, 4)]
        >>> value = torch.randn(2, 80, 8, 32)
        >>> loc, w = torch.rand(2, 10, 8, 2, 4, 2), torch.rand(2, 10, 8, 2, 4)
        >>> sk.ms_deform_attn(value, shapes, [0, 64], loc, w).shape
        torch.Size([2, 10, 256])
    """
    args = arguments(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                     align_corners=align_corners, padding_mode=padding_mode)
    b, lq, heads, levels, points, _ = sampling_locations.shape
    out_shape = (b, lq, heads * value.shape[-1])
    if b * lq * heads * value.shape[-1] * levels * points == 0:  # nothing is sampled: zeros (or an empty result)
        if levels and all(_checks.concrete(t) for t in args[1:3]):  # still a wrong level table is an error
            level_shapes(args[1], args[2], value.shape[1])
        return empty_result(out_shape, value, sampling_locations, attention_weights)
    name = backends.choose_backend(OP, backend, *args)
    plain = backends.get_backend(OP, name).plain
    # the plain path reads the level table on the host: where there are no values to read (torch.compile,
    # torch.jit.trace, meta and fake tensors) the opaque custom op runs instead (its fake kernel needs only shapes)
    if plain is not None and all(_checks.concrete(t) for t in args[:3]):
        return plain(*args)
    return _msda(*args, name)
