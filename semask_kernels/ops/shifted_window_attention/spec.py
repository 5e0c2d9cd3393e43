"""``shifted_window_attention``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases (the one
case list of every backend: Triton, CUDA and the tensor-core emulation read it)."""
from __future__ import annotations

import torch

from .._flops import attention_flops, window_count
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size

PAD_ORDERS = ("roll_then_pad", "pad_then_roll")

# (B, H, W, window, shift): padding on both axes, no shift, a map smaller than the window, non-square windows,
# one-axis shifts, an exact multiple, a 1x1 map, windows of 4 and 24 tokens (one and two 16-row tiles).
SHAPES = (
    (1, 10, 9, (7, 7), (3, 3)),
    (2, 10, 9, (7, 7), (0, 0)),
    (2, 5, 3, (7, 7), (3, 3)),
    (1, 9, 13, (4, 6), (2, 3)),
    (1, 8, 11, (4, 4), (0, 2)),
    (1, 11, 8, (4, 4), (2, 0)),
    (2, 14, 7, (7, 7), (3, 3)),
    (1, 1, 1, (2, 2), (1, 1)),
    (1, 9, 20, (3, 8), (1, 0)),
)


def inputs(b: int, h: int, w: int, heads: int, d: int, window, shift=(0, 0), pad_order: str = "roll_then_pad",
           bias: bool = True, dtype=torch.float32, device="cpu") -> Call:
    """qkv (B, H, W, 3·nH·d) of unit scale, a bias table and a qkv bias scaled 0.5, scale d^-0.5."""
    qkv = torch.randn(b, h, w, 3 * heads * d, device=device).to(dtype)
    table = (0.5 * torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, device=device)).to(dtype)
    qkv_bias = (0.5 * torch.randn(3 * heads * d, device=device)).to(dtype) if bias else None
    return Call({"qkv": qkv, "bias_table": table, "num_heads": heads, "window_size": tuple(window),
                 "shift_size": tuple(shift), "scale": d ** -0.5, "qkv_bias": qkv_bias, "pad_order": pad_order,
                 "mask_value": -100.0}, ("qkv", "bias_table") + (("qkv_bias",) if bias else ()))


def shape_class(qkv, bias_table, qkv_bias, num_heads, window_size, *rest) -> str:
    """The key of a call's rows in auto's choice table (``semask_kernels/_choice.py``): dtype, window, head dim
    and heads (the four Swin-T stages differ in heads); batch and map size scale the time, not the choice."""
    d = qkv.shape[-1] // 3 // num_heads
    return (f"{str(qkv.dtype).removeprefix('torch.')} w{window_size[0]}x{window_size[1]} d{d} h{num_heads}")


def sample(size: Size, dtype, device) -> Call:
    """One Swin block's attention at ``size`` (shifted by ``size.shift`` when the map exceeds the window)."""
    shift = (size.shift, size.shift) if min(size.height, size.width) > size.window else (0, 0)
    return inputs(size.batch, size.height, size.width, size.heads, size.channels // size.heads,
                  (size.window, size.window), shift, dtype=dtype, device=device)


def flops(qkv_shape, bias_table_shape, qkv_bias_shape, num_heads, window_size, *args) -> int:
    b, h, w, c3 = qkv_shape
    wh, ww = window_size
    d = c3 // 3 // num_heads
    return attention_flops(window_count(b, h, w, window_size), num_heads, wh * ww, wh * ww, d, d)


def _non_contiguous() -> Call:
    """qkv a slice of a bigger tensor."""
    heads, d = 2, 16
    big = torch.randn(1, 12, 11, 3 * heads * d + 8)
    call = inputs(1, 10, 9, heads, d, (7, 7), (3, 3))
    return call.with_(qkv=big[:, 1:11, 2:11, 4:4 + 3 * heads * d])


def _channels_first() -> Call:
    """qkv with channels-first memory, no qkv bias."""
    heads, d = 2, 16
    call = inputs(1, 9, 10, heads, d, (7, 7), pad_order="pad_then_roll", bias=False)
    return call.with_(qkv=torch.randn(1, 3 * heads * d, 10, 9).permute(0, 3, 2, 1))


def _shape_cases():
    for b, h, w, window, shift in SHAPES:
        for pad_order in PAD_ORDERS:
            low = FP32 + LOW if (b, h, w, window, shift) == SHAPES[0] else FP32
            yield Case(f"{b}x{h}x{w}-win{window[0]}x{window[1]}-shift{shift[0]}{shift[1]}-{pad_order}",
                       lambda b=b, h=h, w=w, win=window, s=shift, p=pad_order: inputs(b, h, w, 2, 16, win, s, p),
                       dtypes=low)


def _head_dim_cases():
    for d in (16, 32, 64, 128, 24):
        heads = 1 if d >= 64 else 2
        yield Case(f"d{d}", lambda d=d, n=heads: inputs(1, 9, 8, n, d, (7, 7), (3, 3), "pad_then_roll"))


def _large_window_cases():
    """Windows over one 64-token tile, shifted and padded, both pad orders, every dtype: several key blocks, the
    dQ kernel, tile tails, the saved log-sum-exp of triton.onepass."""
    for window, (h, w) in (((12, 12), (13, 12)), ((14, 14), (14, 15))):
        for pad_order in PAD_ORDERS:
            yield Case(f"{window[0]}x{window[1]}-window-{pad_order}",
                       lambda win=window, h=h, w=w, p=pad_order: inputs(1, h, w, 1, 16, win,
                                                                        (win[0] // 2, win[1] // 2), p),
                       dtypes=FP32 + LOW, note=f"N = {window[0] * window[1]}")


CASES = (
    *_shape_cases(),
    *_head_dim_cases(),
    *_large_window_cases(),
    Case("d32-low-precision", lambda: inputs(1, 10, 9, 2, 32, (7, 7), (3, 3), "pad_then_roll"),
         dtypes=FP32 + LOW),
    Case("no-qkv-bias", lambda: inputs(1, 10, 9, 2, 16, (7, 7), (3, 3), bias=False)),
    Case("qkv-slice", _non_contiguous, note="qkv a non-contiguous slice"),
    Case("qkv-channels-first", _channels_first, note="qkv with channels-first memory"),
)

SPEC = OpSpec(
    name="shifted_window_attention",
    preference=("triton", "cuda", "torch", "reference"),  # triton measured faster (H200, Swin-T)
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW, "cuda": FP32 + LOW,
            "triton.onepass": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    magnitude_scaled=("d bias_table", "d qkv_bias"),  # sums over tokens; q, k, v and the output are unit scale
    summary="the whole attention of one Swin block after its qkv Linear",
    extra={"shapes": SHAPES, "pad_orders": PAD_ORDERS},
)
