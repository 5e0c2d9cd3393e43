"""``shifted_window_attention``: custom op registration, fake kernel, autograd, FLOPs, dispatch, public function."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ... import _checks, backends
from .._autograd import empty_result
from .._spec import register_flops
from . import cuda, reference, torch_path, triton, triton_onepass
from .spec import PAD_ORDERS, SPEC, shape_class

OP = SPEC.name
backends.register_op(OP, SPEC.preference, shape_class=shape_class)
backends.register_backend(OP, "reference", forward=reference.forward, backward=reference.backward)
backends.register_module(OP, "torch", torch_path, verified=True)
# every gpu test passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-99220a5-rerun), but its sources changed
# since: the limits and kernel rule moved to csrc/common/limits.h (swa_device.cuh, swa_host.cuh, cuda.py): to rerun
backends.register_module(OP, "cuda", cuda, verified=False)
# every gpu test passed on an H200 (benchmarks/results/gpu/2026-11-29-h200-c29f02c), but its sources changed since:
# the kernels moved to semask_kernels/kernels/window_attention*.py and launch by keyword: to rerun on a GPU
backends.register_module(OP, "triton", triton, verified=False)
# all-heads forward and one-pass backward (kernels/window_attention_onepass.py), the saved log-sum-exp of windows
# over one tile (kernels/window_attention_lse.py): no GPU run has tested it yet
backends.register_module(OP, "triton.onepass", triton_onepass, verified=False)


# Backends whose forward can save the row log-sum-exp and whose backward starts from it and the saved output
# (ARCHITECTURE.md, "Saved softmax statistics"): ``forward_saving_stats(*args) -> (out, lse)``,
# ``backward_from_stats(grad, out, lse, *args)``, ``saves_lse(*args)``. The statistics, when saved, are fp32
# (windows, heads, N) in log2 units, windows in the op's order (image, window row, window column); every other
# backend returns an empty statistics tensor (its backward recomputes what it needs).
STATS_BACKENDS = {"triton.onepass": triton_onepass}


def _saves_lse(backend: str, args: tuple) -> bool:
    """Whether a forward on ``backend`` (a name or a forward/backward pair) saves the log-sum-exp for ``args``:
    both directions run a backend that uses it, and it needs it at this window size."""
    forward = backends.resolve(OP, backend, *args)
    if forward not in STATS_BACKENDS or backends.resolve(OP, backend, *args, direction="backward") != forward:
        return False
    return STATS_BACKENDS[forward].saves_lse(*args)


def _lse_shape(qkv: Tensor, num_heads: int, window_size: Sequence[int]) -> tuple:
    b, h, w, _ = qkv.shape
    wh, ww = window_size
    return (b * (-(-h // wh)) * (-(-w // ww)), num_heads, wh * ww)


@torch.library.custom_op("semask_kernels::shifted_window_attention", mutates_args=())
def _swa(qkv: Tensor, bias_table: Tensor, qkv_bias: Optional[Tensor], num_heads: int, window_size: Sequence[int],
         shift_size: Sequence[int], scale: float, pad_order: str, mask_value: float, backend: str,
         save_stats: bool = False) -> tuple[Tensor, Tensor]:
    """(output, statistics): the statistics are the saved log-sum-exp (see STATS_BACKENDS) when ``save_stats``
    (a gradient is needed) and the backend saves them at this size, else an empty fp32 tensor."""
    args = (qkv, bias_table, qkv_bias, num_heads, list(window_size), list(shift_size), scale, pad_order, mask_value)
    name = backends.resolve(OP, backend, *args)
    if save_stats and _saves_lse(backend, args):
        return STATS_BACKENDS[name].forward_saving_stats(*args)
    return backends.get_backend(OP, name).forward(*args), qkv.new_empty(0, dtype=torch.float32)


@_swa.register_fake
def _(qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value, backend,
      save_stats=False):
    args = (qkv, bias_table, qkv_bias, num_heads, list(window_size), list(shift_size), scale, pad_order, mask_value)
    stats = _lse_shape(qkv, num_heads, window_size) if save_stats and _saves_lse(backend, args) else (0,)
    return qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3)), qkv.new_empty(stats, dtype=torch.float32)


@torch.library.custom_op("semask_kernels::shifted_window_attention_bwd", mutates_args=())
def _swa_bwd(grad: Tensor, qkv: Tensor, bias_table: Tensor, qkv_bias: Optional[Tensor], num_heads: int,
             window_size: Sequence[int], shift_size: Sequence[int], scale: float, pad_order: str,
             mask_value: float, backend: str, output: Optional[Tensor] = None,
             stats: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    args = (qkv, bias_table, qkv_bias, num_heads, list(window_size), list(shift_size), scale, pad_order, mask_value)
    if output is not None and stats is not None and stats.numel() and backend in STATS_BACKENDS:
        dqkv, dtable, dbias = STATS_BACKENDS[backend].backward_from_stats(grad.contiguous(), output, stats, *args)
    else:
        dqkv, dtable, dbias = backends.get_backend(OP, backend).backward(grad.contiguous(), *args)
    return dqkv, dtable, (dbias if dbias is not None else qkv.new_empty(0))


@_swa_bwd.register_fake
def _(grad, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale, pad_order, mask_value, backend,
      output=None, stats=None):
    dbias = torch.empty_like(qkv_bias) if qkv_bias is not None else qkv.new_empty(0)
    return torch.empty_like(qkv), torch.empty_like(bias_table), dbias


class Geometry(NamedTuple):
    """The op's non-tensor arguments, as the custom ops take them after the three tensors."""
    num_heads: int
    window_size: list
    shift_size: list
    scale: float
    pad_order: str
    mask_value: float


def _setup_context(ctx, inputs, output):
    qkv, bias_table, qkv_bias, *geometry, backend, _save_stats = inputs
    out, stats = output
    ctx.mark_non_differentiable(stats)
    saved = stats.numel() > 0  # the output and its statistics are kept only where the backward uses them
    ctx.save_for_backward(qkv, bias_table, qkv_bias, out if saved else None, stats if saved else None)
    ctx.geometry = Geometry(*geometry)
    ctx.backend = backends.resolve(OP, backend, qkv, bias_table, qkv_bias, *ctx.geometry,  # "auto": TorchScript
                                   direction="backward")


def _backward(ctx, grad, _grad_stats):
    qkv, bias_table, qkv_bias, out, stats = ctx.saved_tensors
    dqkv, dtable, dbias = _swa_bwd(grad, qkv, bias_table, qkv_bias, *ctx.geometry, ctx.backend, out, stats)
    no_grad = (None,) * (len(Geometry._fields) + 2)  # the geometry, the backend name and save_stats
    return (dqkv, dtable, dbias if qkv_bias is not None else None) + no_grad


_swa.register_autograd(_backward, setup_context=_setup_context)


register_flops(SPEC, torch.ops.semask_kernels.shifted_window_attention,
               torch.ops.semask_kernels.shifted_window_attention_bwd, lambda grad, *forward_args: forward_args)


def _validate(qkv, bias_table, num_heads, window_size, shift_size, scale, qkv_bias, pad_order, mask_value):
    _checks.tensor("qkv", qkv, ndim=4)
    num_heads = _checks.positive_int("num_heads", num_heads)
    window_size = _checks.pair("window_size", window_size)
    shift_size = _checks.pair("shift_size", shift_size, minimum=0)
    for axis, (s, w) in enumerate(zip(shift_size, window_size)):
        if s >= w:
            raise ValueError(f"shift_size must be < window_size on each axis, got shift_size={shift_size} "
                             f"for window_size={window_size} (axis {axis})")
    b, h, w, c3 = qkv.shape
    if c3 % (3 * num_heads) or c3 == 0:
        raise ValueError(f"qkv's last dim must be 3·num_heads·d = 3·{num_heads}·d, got {c3}")
    _checks.tensor("bias_table", bias_table, ndim=2)
    _checks.same_kind("qkv", qkv, "bias_table", bias_table)
    expected = ((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
    _checks.shape("bias_table", bias_table, expected)
    if qkv_bias is not None:
        _checks.tensor("qkv_bias", qkv_bias, ndim=1)
        _checks.same_kind("qkv", qkv, "qkv_bias", qkv_bias)
        _checks.shape("qkv_bias", qkv_bias, (c3,))
    _checks.choice("pad_order", pad_order, PAD_ORDERS)
    mask_value = _checks.number("mask_value", mask_value)
    d = c3 // 3 // num_heads
    scale = d ** -0.5 if scale is None else _checks.number("scale", scale)
    return num_heads, window_size, shift_size, scale, mask_value


def arguments(qkv: Tensor, bias_table: Tensor, *, num_heads: int, window_size, shift_size=(0, 0),
              scale: Optional[float] = None, qkv_bias: Optional[Tensor] = None, pad_order: str = "roll_then_pad",
              mask_value: float = -100.0) -> tuple:
    """The validated backend arguments ``(qkv, bias_table, qkv_bias, num_heads, [Wh, Ww], [sh, sw], scale,
    pad_order, mask_value)`` of a public call."""
    num_heads, window_size, shift_size, scale, mask_value = _validate(
        qkv, bias_table, num_heads, window_size, shift_size, scale, qkv_bias, pad_order, mask_value)
    return qkv, bias_table, qkv_bias, num_heads, list(window_size), list(shift_size), scale, pad_order, mask_value


def shifted_window_attention(qkv: Tensor, bias_table: Tensor, *, num_heads: int, window_size, shift_size=(0, 0),
                             scale: Optional[float] = None, qkv_bias: Optional[Tensor] = None,
                             pad_order: str = "roll_then_pad", mask_value: float = -100.0,
                             backend: str = "auto") -> Tensor:
    """The whole attention of one Swin block after its qkv Linear, as one op.

    Args:
        qkv: (B, H, W, 3C), the qkv Linear's output on the normed map, last dim laid out [3][nH][d] (timm's
            reshape). fp16/bf16/fp32/fp64.
        bias_table: ((2Wh-1)(2Ww-1), nH) relative-position bias table, same dtype and device.
        num_heads: nH; d = C / nH.
        window_size: int or (Wh, Ww). shift_size: int or (sh, sw), each in [0, window).
        scale: multiplies q; defaults to d ** -0.5.
        qkv_bias: (3C,) bias of the qkv Linear: the q, k, v of padded tokens (zeros when None). Gets a gradient.
        pad_order: "roll_then_pad" (timm) or "pad_then_roll" (official Swin segmentation / mmseg / SeMask).
        mask_value: additive value between tokens of different shift regions (-100 as in timm).
        backend: "auto", "reference", "torch", "triton", "cuda", or the variant "triton.onepass" (all heads of a
            window per program forward, one-pass backward; not yet verified on a GPU).

    Returns:
        (B, H, W, C): the attention output at each token's own position, the input of ``proj``.

    Example:
        >>> import torch, semask_kernels as sk
        >>> qkv = torch.randn(2, 10, 9, 3 * 96)
        >>> sk.shifted_window_attention(qkv, torch.zeros(169, 3), num_heads=3, window_size=7, shift_size=3).shape
        torch.Size([2, 10, 9, 96])
    """
    args = arguments(qkv, bias_table, num_heads=num_heads, window_size=window_size, shift_size=shift_size,
                     scale=scale, qkv_bias=qkv_bias, pad_order=pad_order, mask_value=mask_value)
    if qkv.numel() == 0:  # B, H or W is 0: an empty map attends to nothing
        return empty_result((*qkv.shape[:-1], qkv.shape[-1] // 3), qkv, bias_table, qkv_bias)
    forward, backward = backends.choose_backends(OP, backend, *args)  # auto: per direction (choice table)
    plain = backends.get_backend(OP, forward).plain  # the torch path's autograd then does the backward too
    # torch.jit.trace records the registered op, as TorchScript does (the plain path's cached layouts and autograd
    # Functions would be baked into the trace, or break it); fake tensors take its fake kernel (the cached layouts
    # are real tensors)
    if plain is not None and not torch.jit.is_tracing() and not _checks.fake(qkv):
        return plain(*args)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:3])
    return _swa(*args, backends.pair(forward, backward), needs_grad)[0]
