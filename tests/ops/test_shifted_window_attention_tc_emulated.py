"""The tensor-core forward of shifted_window_attention (csrc/shifted_window_attention/swa_tc_forward.cuh), its
own step functions run on the CPU by ``cuda.emulated_forward``: grouping of windows per CTA, 16-row tiles of
padded windows, the two-lanes-per-row softmax, the write-back, against the reference. Shared memory starts as
NaN bytes in the emulation, so a step reading anything not staged shows up as NaN, and so does the output, so
an element never written does too; a write past the plan's bytes is an error. The WMMA instructions themselves run only on a GPU (test_shifted_window_attention_cuda.py).

fp16/bf16 bounds: the self-calibrating rule of tests/utils.py (error ≤ 2× the low-precision reference's).
"""
from __future__ import annotations

import pytest
import torch

from semask_kernels.ops.shifted_window_attention import cuda, reference
from tests.ops.cuda_marks import needs_ext
from tests.utils import assert_error_within

pytestmark = needs_ext

LOW = [torch.float16, torch.bfloat16]


def _problem(b, h, w, heads, d, window, shift, pad_order, bias=True, mask_value=-100.0, seed=0):
    """float32 arguments whose values are exact in fp16 and bf16 alike (rounded through both)."""
    g = torch.Generator().manual_seed(seed)

    def rounded(*shape, std=1.0):
        return (std * torch.randn(*shape, generator=g)).to(torch.bfloat16).to(torch.float16).float()

    qkv = rounded(b, h, w, 3 * heads * d)
    table = rounded((2 * window[0] - 1) * (2 * window[1] - 1), heads, std=0.5)
    qkv_bias = rounded(3 * heads * d, std=0.5) if bias else None
    return (qkv, table, qkv_bias, heads, list(window), list(shift), d ** -0.5, pad_order, mask_value)


def _cast(args, dtype):
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) else a for a in args)


def check(args32, dtype, group=0):
    low = _cast(args32, dtype)
    out = cuda.emulated_forward(*low, group=group)
    assert out.dtype == dtype and out.shape == args32[0].shape[:3] + (args32[0].shape[3] // 3,)
    assert out.is_contiguous()
    assert not out.isnan().any(), "NaN in the output: an element never written, or shared memory read unwritten"
    assert_error_within(out, reference.forward(*low), reference.forward(*args32), 2.0, name=f"output {dtype}")
    return out


# (B, H, W, window, shift): padding on both axes, no shift, a map smaller than the window, non-square windows,
# one-axis shifts, an exact multiple, a 1x1 map, windows of 4 and 24 tokens (one and two 16-row tiles).
CASES = [
    (1, 10, 9, (7, 7), (3, 3)),
    (2, 10, 9, (7, 7), (0, 0)),
    (2, 5, 3, (7, 7), (3, 3)),
    (1, 9, 13, (4, 6), (2, 3)),
    (1, 8, 11, (4, 4), (0, 2)),
    (1, 11, 8, (4, 4), (2, 0)),
    (2, 14, 7, (7, 7), (3, 3)),
    (1, 1, 1, (2, 2), (1, 1)),
    (1, 9, 20, (3, 8), (1, 0)),
]


@pytest.mark.parametrize("group", [0, 3])
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("b,h,w,window,shift", CASES)
def test_matches_reference(b, h, w, window, shift, pad_order, dtype, group):
    check(_problem(b, h, w, 2, 32, window, shift, pad_order), dtype, group)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("d,heads", [(16, 3), (32, 2), (64, 2), (128, 1)])
def test_head_dims(d, heads, dtype):
    check(_problem(2, 10, 9, heads, d, (7, 7), (3, 3), "pad_then_roll"), dtype)


@pytest.mark.parametrize("d", [32, 128])
@pytest.mark.parametrize("window,hw,shift,pad_order", [((12, 12), (25, 13), (6, 6), "roll_then_pad"),
                                                      ((14, 14), (15, 30), (7, 7), "pad_then_roll"),
                                                      ((16, 16), (16, 17), (8, 0), "roll_then_pad")])
def test_large_windows(window, hw, shift, pad_order, d):
    """N = 144, 196 (13 tiles of 16 rows, the last one mostly past the window) and 256 (d = 32 only: with
    d = 128 one window's k, v and the warps' tiles need 258 KiB of shared memory, over an H100's 227 KiB, and
    the CUDA op takes its CUDA-core kernel instead)."""
    args = _problem(1, *hw, 2, d, window, shift, pad_order)
    if window == (16, 16) and d == 128:
        with pytest.raises(RuntimeError, match="needs 263968 bytes of shared memory, more than 232448"):
            cuda.emulated_forward(*_cast(args, torch.float16))
        return
    check(args, torch.float16)


@pytest.mark.parametrize("group", [1, 2, 3, 4, 7, 64])
def test_every_grouping_gives_the_same_bits(group):
    """18 windows per head cut into CTAs of `group` windows (a short last group, a group larger than the call):
    each window's arithmetic does not depend on its CTA, so every grouping gives the same output."""
    args = _cast(_problem(2, 20, 19, 3, 32, (7, 7), (3, 3), "pad_then_roll"), torch.float16)
    one = cuda.emulated_forward(*args, group=1)
    grouped = cuda.emulated_forward(*args, group=group)
    assert not grouped.isnan().any(), f"group={group}: output elements never written"
    assert torch.equal(grouped, one)
    assert torch.equal(cuda.emulated_forward(*args, group=0), one)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_without_qkv_bias_and_with_inf_mask(dtype):
    check(_problem(2, 10, 9, 2, 32, (7, 7), (3, 3), "pad_then_roll", bias=False), dtype)
    check(_problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad", mask_value=float("-inf")), dtype)


def test_non_contiguous_inputs():
    qkv, table, qkv_bias, *rest = _cast(_problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad"), torch.float16)
    big = torch.zeros(1, 12, 11, qkv.shape[-1] + 8, dtype=torch.float16)
    big[:, 1:11, 2:11, 4:4 + qkv.shape[-1]] = qkv
    view = big[:, 1:11, 2:11, 4:4 + qkv.shape[-1]]
    table_t = table.t().contiguous().t()
    assert not view.is_contiguous() and not table_t.is_contiguous()
    assert torch.equal(cuda.emulated_forward(view, table_t, qkv_bias, *rest),
                       cuda.emulated_forward(qkv, table, qkv_bias, *rest))


def test_errors_name_the_argument():
    args = _cast(_problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad"), torch.float16)
    with pytest.raises(RuntimeError, match="qkv must have dtype float16 or bfloat16"):
        cuda.emulated_forward(*_cast(args, torch.float32))
    with pytest.raises(RuntimeError, match="group must be in"):
        cuda.emulated_forward(*args, group=-1)
    with pytest.raises(RuntimeError, match="bias_table"):
        cuda.emulated_forward(args[0], args[1][:-1], *args[2:])
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="qkv must be a CPU tensor"):
            cuda.emulated_forward(args[0].cuda(), *args[1:])
