"""The tensor-core kernels of shifted_window_attention (csrc/shifted_window_attention/swa_tc_{forward,backward}.cuh),
their own step functions run on the CPU by ``cuda.emulated_forward`` / ``emulated_backward``: grouping of windows
per CTA, 16-row tiles of padded windows, transposed tile products, the softmax and its backward, the bias-table
gather, the padding-key sums into d qkv_bias, the write-back, against the reference.

In the emulation, shared memory, outputs and workspaces start as NaN: a step reading anything not staged, or an
element never written, shows up as NaN; a write past the plan's bytes is an error. The WMMA instructions
themselves run only on a GPU (test_shifted_window_attention_cuda.py).

fp16/bf16 bounds: the self-calibrating rule of tests/utils.py (error ≤ 2× (forward) / 3× (gradients) the
low-precision reference's).
"""
from __future__ import annotations

import pytest
import torch

from semask_kernels.ops.shifted_window_attention import cuda, reference
from tests.ops.cuda_marks import needs_ext
from semask_kernels.ops.shifted_window_attention.spec import SHAPES as CASES
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


def check_backward(args32, dtype, group=0, seed=1):
    """The three gradients against the fp32 reference (3× the low-precision reference's error), NaN-free."""
    low = _cast(args32, dtype)
    out_shape = args32[0].shape[:3] + (args32[0].shape[3] // 3,)
    grad32 = torch.randn(out_shape, generator=torch.Generator().manual_seed(seed)).to(dtype).float()
    got = cuda.emulated_backward(grad32.to(dtype), *low, group=group)
    want = reference.backward(grad32, *args32)
    ref_low = reference.backward(grad32.to(dtype), *low)
    for name, g, r, e in zip(("qkv", "bias_table", "qkv_bias"), got, ref_low, want):
        if e is None:
            assert g is None, f"{name}: expected None"
            continue
        assert g.dtype == dtype and g.shape == e.shape and g.is_contiguous(), name
        assert not g.isnan().any(), f"d {name}: NaN, an element never written or shared memory read unwritten"
        assert_error_within(g, r, e, 3.0, name=f"d {name} {dtype}")
    return got


@pytest.mark.parametrize("group", [0, 3])
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("b,h,w,window,shift", CASES)
def test_matches_reference(b, h, w, window, shift, pad_order, dtype, group):
    args = _problem(b, h, w, 2, 32, window, shift, pad_order)
    check(args, dtype, group)
    check_backward(args, dtype, group)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("d,heads", [(16, 3), (32, 2), (64, 2), (128, 1)])
def test_head_dims(d, heads, dtype):
    args = _problem(2, 10, 9, heads, d, (7, 7), (3, 3), "pad_then_roll")
    check(args, dtype)
    check_backward(args, dtype)


@pytest.mark.parametrize("d", [32, 128])
@pytest.mark.parametrize("window,hw,shift,pad_order", [((12, 12), (25, 13), (6, 6), "roll_then_pad"),
                                                      ((14, 14), (15, 30), (7, 7), "pad_then_roll"),
                                                      ((16, 16), (16, 17), (8, 0), "roll_then_pad")])
def test_large_windows(window, hw, shift, pad_order, d):
    """N = 144, 196 (13 tiles of 16 rows, the last one mostly past the window) and 256. Forward: all but N = 256
    with d = 128 (one window's k, v and the warps' tiles need 258 KiB of shared memory, over an H100's 227 KiB).
    Backward: N = 144 with d = 32 only. The CUDA op takes its CUDA-core kernels where these do not fit."""
    args = _problem(1, *hw, 2, d, window, shift, pad_order)
    if window == (16, 16) and d == 128:
        with pytest.raises(RuntimeError, match="needs 263968 bytes of shared memory, more than 232448"):
            cuda.emulated_forward(*_cast(args, torch.float16))
    else:
        check(args, torch.float16)
    if window == (12, 12) and d == 32:
        check_backward(args, torch.float16)
    else:  # the backward holds a whole window (q, k, v, dO, fp32 scores): N = 144 fits at d <= 64
        with pytest.raises(RuntimeError, match="the tensor-core backward needs .* more than 232448"):
            grad = torch.zeros(args[0].shape[:3] + (args[0].shape[3] // 3,), dtype=torch.float16)
            cuda.emulated_backward(grad, *_cast(args, torch.float16))


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


@pytest.mark.parametrize("group", [2, 3, 7, 64])
def test_backward_grouping(group):
    """Each window's d qkv does not depend on its CTA (same bits); the d bias_table / d qkv_bias partials are
    summed per CTA, so only their rounding may change with the grouping."""
    args32 = _problem(2, 20, 19, 3, 32, (7, 7), (3, 3), "roll_then_pad")
    args = _cast(args32, torch.float16)
    grad = torch.randn(2, 20, 19, 96, generator=torch.Generator().manual_seed(2)).half()
    one = cuda.emulated_backward(grad, *args, group=1)
    grouped = cuda.emulated_backward(grad, *args, group=group)
    assert not any(g.isnan().any() for g in grouped)
    assert torch.equal(grouped[0], one[0])
    for a, b in zip(grouped[1:], one[1:]):
        torch.testing.assert_close(a.float(), b.float(), atol=2e-2, rtol=2e-3)
    check_backward(args32, torch.float16, group=group)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_without_qkv_bias_and_with_inf_mask(dtype):
    for args in (_problem(2, 10, 9, 2, 32, (7, 7), (3, 3), "pad_then_roll", bias=False),
                 _problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad", mask_value=float("-inf"))):
        check(args, dtype)
        check_backward(args, dtype)


def test_non_contiguous_inputs():
    qkv, table, qkv_bias, *rest = _cast(_problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad"), torch.float16)
    big = torch.zeros(1, 12, 11, qkv.shape[-1] + 8, dtype=torch.float16)
    big[:, 1:11, 2:11, 4:4 + qkv.shape[-1]] = qkv
    view = big[:, 1:11, 2:11, 4:4 + qkv.shape[-1]]
    table_t = table.t().contiguous().t()
    assert not view.is_contiguous() and not table_t.is_contiguous()
    assert torch.equal(cuda.emulated_forward(view, table_t, qkv_bias, *rest),
                       cuda.emulated_forward(qkv, table, qkv_bias, *rest))
    grad = torch.randn(1, 10, 18, 64, generator=torch.Generator().manual_seed(3)).half()[:, :, ::2]
    assert not grad.is_contiguous()
    for a, b in zip(cuda.emulated_backward(grad, view, table_t, qkv_bias, *rest),
                    cuda.emulated_backward(grad.contiguous(), qkv, table, qkv_bias, *rest)):
        assert torch.equal(a, b)


def test_errors_name_the_argument():
    args = _cast(_problem(1, 10, 9, 2, 32, (7, 7), (3, 3), "roll_then_pad"), torch.float16)
    with pytest.raises(RuntimeError, match="qkv must have dtype float16 or bfloat16"):
        cuda.emulated_forward(*_cast(args, torch.float32))
    with pytest.raises(RuntimeError, match="group must be in"):
        cuda.emulated_forward(*args, group=-1)
    with pytest.raises(RuntimeError, match="bias_table"):
        cuda.emulated_forward(args[0], args[1][:-1], *args[2:])
    with pytest.raises(RuntimeError, match="grad.size"):
        cuda.emulated_backward(torch.zeros(1, 10, 9, 32, dtype=torch.float16), *args)
    with pytest.raises(RuntimeError, match="grad must have dtype"):
        cuda.emulated_backward(torch.zeros(1, 10, 9, 64), *args)
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="qkv must be a CPU tensor"):
            cuda.emulated_forward(args[0].cuda(), *args[1:])


def _unaligned(t: torch.Tensor) -> torch.Tensor:
    """The same values, contiguous, 2 bytes past a 16-byte boundary."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype)
    flat[1:] = t.flatten()
    out = flat[1:].view(t.shape)
    assert out.is_contiguous() and out.data_ptr() % 16 != 0
    return out


def test_unaligned_inputs_take_the_element_wise_staging():
    """16-byte staging copies need 16-byte aligned qkv / qkv_bias / grad; otherwise the kernels copy element by
    element, with the same result."""
    qkv, table, qkv_bias, *rest = _cast(_problem(2, 10, 9, 2, 32, (7, 7), (3, 3), "pad_then_roll"), torch.bfloat16)
    grad = torch.randn(2, 10, 9, 64, generator=torch.Generator().manual_seed(4)).bfloat16()
    aligned = (qkv, table, qkv_bias, *rest)
    for args, g in [((_unaligned(qkv), table, qkv_bias, *rest), grad),
                    ((qkv, table, _unaligned(qkv_bias), *rest), grad),
                    (aligned, _unaligned(grad))]:
        assert torch.equal(cuda.emulated_forward(*args), cuda.emulated_forward(*aligned))
        for a, b in zip(cuda.emulated_backward(g, *args), cuda.emulated_backward(grad, *aligned)):
            assert torch.equal(a, b)
