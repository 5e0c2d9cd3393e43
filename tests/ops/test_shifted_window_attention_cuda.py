"""shifted_window_attention, CUDA backend: forward and the three gradients against the reference (GPU), and the
C++ schemas, argument errors and capability reasons (CPU).

GPU tests compare against the reference run in float32 on the same data (fp32: the per-dtype bounds of
tests/utils.py; fp16/bf16: the self-calibrating rule, error ≤ 2× (forward) / 3× (gradients) the error of the
reference run in the same low precision), cross-check the Triton backend, and check bitwise determinism. Before
each checked call the allocator's free blocks of the outputs' sizes are filled with NaN, so an element a kernel
never writes fails the comparison.
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from tests.ops.cuda_marks import gpu_test, needs_ext
from semask_kernels.ops.shifted_window_attention import cuda, reference
from semask_kernels.ops.shifted_window_attention.spec import SHAPES as CASES
from tests.utils import assert_close, assert_error_within, poison_cuda_cache

OP = "shifted_window_attention"


def _inputs(b, h, w, heads, d, window, dtype=torch.float32, device="cuda", bias=True, seed=0):
    torch.manual_seed(seed)
    qkv = torch.randn(b, h, w, 3 * heads * d, device=device).to(dtype)
    table = (0.5 * torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, device=device)).to(dtype)
    qkv_bias = (0.5 * torch.randn(3 * heads * d, device=device)).to(dtype) if bias else None
    return qkv, table, qkv_bias


def _args(qkv, table, qkv_bias, heads, window, shift, pad_order, mask_value=-100.0):
    d = qkv.shape[-1] // 3 // heads
    return (qkv, table, qkv_bias, heads, list(window), list(shift), d ** -0.5, pad_order, mask_value)


def _cast(args, dtype):
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) else a for a in args)


def _summed_scale(t: torch.Tensor) -> float:
    """Gradients summed over many tokens (bias table, qkv_bias) are larger than unit scale."""
    return max(1.0, float(t.abs().max()))


def check_fp32(args, grad=None):
    """Forward and every gradient against the float32 reference on the same data."""
    expected = reference.forward(*args)
    poison_cuda_cache(expected)
    out = cuda.forward(*args)
    assert out.dtype == torch.float32 and out.shape == expected.shape and out.is_contiguous()
    assert_close(out, expected, name="output")
    grad = torch.randn_like(expected) if grad is None else grad
    poison_cuda_cache(*args[:3])
    got = cuda.backward(grad, *args)
    want = reference.backward(grad, *args)
    assert len(got) == 3
    for name, g, e in zip(("qkv", "bias_table", "qkv_bias"), got, want):
        if e is None:
            assert g is None, f"{name}: expected None"
            continue
        assert g.dtype == e.dtype and g.shape == e.shape and g.is_contiguous(), name
        assert_close(g, e, name=name, scale=1.0 if name == "qkv" else _summed_scale(e))
    return got


def check_low_precision(args32, dtype, kernel="auto", backward_kernel=None):
    """fp16 / bf16: the fused op's error against the fp32 reference is within 2× / 3× the low-precision
    reference's own error (both run on the same rounded inputs). ``kernel``: the forward kernel, and the backward's
    unless ``backward_kernel`` is given."""
    args32 = _cast(_cast(args32, dtype), torch.float32)  # the exact problem the low-precision runs see
    low = _cast(args32, dtype)
    exact = reference.forward(*args32)
    poison_cuda_cache(low[0][..., : low[0].shape[-1] // 3])
    out = cuda.forward(*low, kernel=kernel)
    assert out.dtype == dtype
    assert_error_within(out, reference.forward(*low), exact, 2.0, name="output")
    grad = torch.randn_like(exact).to(dtype).float()
    want = reference.backward(grad, *args32)
    ref_low = reference.backward(grad.to(dtype), *low)
    poison_cuda_cache(*low[:3])
    got = cuda.backward(grad.to(dtype), *low, kernel=backward_kernel or kernel)
    for name, g, r, e in zip(("qkv", "bias_table", "qkv_bias"), got, ref_low, want):
        if e is None:
            assert g is None
            continue
        assert g.dtype == dtype, name
        assert_error_within(g, r, e, 3.0, name=name)


# ---- CPU: the C++ schemas, errors and reasons ---------------------------------------------------------------

@needs_ext
def test_cpp_op_rejects_cpu_tensors_naming_the_argument():
    qkv, table, qkv_bias = _inputs(1, 5, 6, 2, 16, (4, 4), device="cpu")
    args = _args(qkv, table, qkv_bias, 2, (4, 4), (2, 2), "roll_then_pad")
    with pytest.raises(RuntimeError, match="qkv must be a CUDA tensor"):
        torch.ops.semask_kernels.shifted_window_attention_forward(*args)
    with pytest.raises(RuntimeError, match="qkv must be a CUDA tensor"):
        torch.ops.semask_kernels.shifted_window_attention_backward(torch.zeros(1, 5, 6, 32), *args)


def test_supports_reasons_on_cpu():
    qkv, table, qkv_bias = _inputs(1, 5, 6, 2, 16, (4, 4), device="cpu")
    assert "needs CUDA tensors" in cuda.supports(*_args(qkv, table, qkv_bias, 2, (4, 4), (0, 0), "roll_then_pad"))


def test_reference_is_auto_choice_on_cpu():
    qkv, table, qkv_bias = _inputs(1, 5, 6, 2, 16, (4, 4), device="cpu")
    out = sk.shifted_window_attention(qkv, table, num_heads=2, window_size=4, qkv_bias=qkv_bias)
    assert out.shape == (1, 5, 6, 32)
    with pytest.raises(RuntimeError, match="cuda"):
        sk.shifted_window_attention(qkv, table, num_heads=2, window_size=4, backend="cuda")


def _token_info(h, w, window, shift, pad_then_roll, w_img, t):
    """Python mirror of swa::token_info (csrc/shifted_window_attention/swa_device.cuh): (source pixel y * W + x
    or -1 for padding, lin, region) of token t of window w_img."""
    wh, ww = window
    sh, sw = shift
    hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
    wrow, wcol = divmod(w_img, wp // ww)
    ti, tj = divmod(t, ww)
    ph, pw = wrow * wh + ti, wcol * ww + tj
    if pad_then_roll:
        y, x = (ph + sh) % hp, (pw + sw) % wp
        pad = y >= h or x >= w
    else:
        pad = ph >= h or pw >= w
        y, x = (ph + sh) % h, (pw + sw) % w
    rh = 0 if sh == 0 else int(ph >= hp - wh) + int(ph >= hp - sh)
    rw = 0 if sw == 0 else int(pw >= wp - ww) + int(pw >= wp - sw)
    return (-1 if pad else y * w + x), ti * (2 * ww - 1) + tj, rh * 3 + rw


@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("h,w,window,shift", [(10, 9, (7, 7), (3, 3)), (5, 3, (7, 7), (3, 3)), (9, 13, (4, 6), (2, 3)),
                                             (8, 11, (4, 4), (0, 2)), (14, 7, (7, 7), (0, 0))])
def test_index_rule_matches_the_reference_layout(h, w, window, shift, pad_order):
    """The kernels' coordinate rule (mirrored in Python) against the reference's own roll / pad / partition of a
    map of pixel ids, its shift mask and its relative-position index: the design, checked on the CPU."""
    from semask_kernels.ops import _windows
    wh, ww = window
    hp, wp = _windows.padded_size(h, wh), _windows.padded_size(w, ww)
    ids = torch.arange(h * w, dtype=torch.float64).view(1, h, w, 1)
    fill = torch.tensor([-1.0], dtype=torch.float64)
    if pad_order == "roll_then_pad":
        grid = _windows.pad_with(torch.roll(ids, (-shift[0], -shift[1]), (1, 2)), hp, wp, fill)
    else:
        grid = torch.roll(_windows.pad_with(ids, hp, wp, fill), (-shift[0], -shift[1]), (1, 2))
    windows = _windows.window_partition(grid, window)[..., 0]  # nW, N
    index = _windows.relative_position_index(window)
    mask = _windows.shift_mask(hp, wp, window, shift, 1.0) if any(shift) else None
    n = wh * ww
    for w_img in range(windows.shape[0]):
        info = [_token_info(h, w, window, shift, pad_order == "pad_then_roll", w_img, t) for t in range(n)]
        assert [i[0] for i in info] == windows[w_img].long().tolist()
        lin = torch.tensor([i[1] for i in info])
        assert torch.equal(lin[:, None] - lin[None, :] + (wh - 1) * (2 * ww - 1) + (ww - 1), index)
        region = torch.tensor([i[2] for i in info])
        different = (region[:, None] != region[None, :]).double()
        assert torch.equal(different, mask[w_img] if mask is not None else torch.zeros(n, n, dtype=torch.float64))


# ---- GPU ----------------------------------------------------------------------------------------------------

@gpu_test
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("b,h,w,window,shift", CASES)
def test_matches_reference_fp32(b, h, w, window, shift, pad_order):
    qkv, table, qkv_bias = _inputs(b, h, w, 2, 32, window)
    check_fp32(_args(qkv, table, qkv_bias, 2, window, shift, pad_order))


@gpu_test
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("d,heads", [(16, 3), (32, 2), (64, 2), (128, 1)])
def test_head_dims(d, heads, pad_order):
    qkv, table, qkv_bias = _inputs(2, 10, 9, heads, d, (7, 7))
    check_fp32(_args(qkv, table, qkv_bias, heads, (7, 7), (3, 3), pad_order))


@gpu_test
@pytest.mark.parametrize("d", [16, 32, 64, 128])
@pytest.mark.parametrize("window,hw,shift,pad_order", [((12, 12), (25, 13), (6, 6), "roll_then_pad"),
                                                      ((14, 14), (15, 30), (7, 7), "pad_then_roll"),
                                                      ((16, 16), (16, 17), (8, 0), "roll_then_pad")])
def test_large_windows(window, hw, shift, pad_order, d):
    """N = 144, 196, 256: several 32-query blocks and 32-key chunks, chunk tails."""
    qkv, table, qkv_bias = _inputs(1, *hw, 2, d, window)
    check_fp32(_args(qkv, table, qkv_bias, 2, window, shift, pad_order))


@gpu_test
@pytest.mark.parametrize("kernel", ["tensor_core", "cuda_core"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("window,hw,d,tc_backward", [
    ((7, 7), (10, 9), 32, True), ((12, 12), (13, 25), 16, True), ((14, 14), (15, 15), 64, False),
    ((7, 7), (8, 8), 128, True), ((16, 16), (16, 17), 32, False), ((3, 8), (9, 20), 16, True)])
def test_low_precision(dtype, pad_order, window, hw, d, tc_backward, kernel):
    """Both kernels forward and backward; the tensor-core backward holds a whole window in shared memory, so
    windows of 196 / 256 tokens take the CUDA-core backward (asking for tensor_core there is an error)."""
    qkv, table, qkv_bias = _inputs(2, *hw, 2, d, window)
    args = _args(qkv, table, qkv_bias, 2, window, (window[0] // 2, window[1] // 2), pad_order)
    backward_kernel = kernel if kernel == "cuda_core" or tc_backward else "auto"
    check_low_precision(args, dtype, kernel, backward_kernel)
    if not tc_backward:
        with pytest.raises(RuntimeError, match="kernel='tensor_core' needs"):
            cuda.backward(torch.zeros_like(qkv[..., : qkv.shape[-1] // 3]).to(dtype), *_cast(args, dtype),
                          kernel="tensor_core")


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("b,hw,heads", [(8, (56, 56), 3), (16, (128, 128), 3), (4, (7, 7), 24)])
def test_tensor_core_forward_at_model_shapes(b, hw, heads, dtype):
    """Swin-T stage 1 at 224 and SeMask-T stage 1 at 512 (the plan groups several windows per CTA), and a
    one-window map with many heads; against the reference and the CPU emulation of the same kernel."""
    qkv, table, qkv_bias = _inputs(b, *hw, heads, 32, (7, 7))
    args = _args(qkv, table, qkv_bias, heads, (7, 7), (3, 3), "pad_then_roll")
    check_low_precision(args, dtype, "tensor_core")
    low = _cast(_args(qkv[:1], table, qkv_bias, heads, (7, 7), (3, 3), "pad_then_roll"), dtype)
    emulated = cuda.emulated_forward(*_cast_to(low, "cpu"))
    assert_close(cuda.forward(*low, kernel="tensor_core").float().cpu(), emulated.float(), dtype, name="emulated")
    grad = torch.randn(1, *hw, heads * 32, device="cuda").to(dtype)
    on_gpu = cuda.backward(grad, *low, kernel="tensor_core")
    emulated = cuda.emulated_backward(grad.cpu(), *_cast_to(low, "cpu"))
    for name, a, e in zip(("qkv", "bias_table", "qkv_bias"), on_gpu, emulated):
        assert_close(a.float().cpu(), e.float(), dtype, name=f"emulated d {name}", scale=_summed_scale(e.float()))


def _cast_to(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


@gpu_test
def test_kernel_argument():
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    with pytest.raises(RuntimeError, match="kernel='tensor_core' needs float16 / bfloat16"):
        cuda.forward(*args, kernel="tensor_core")
    with pytest.raises(RuntimeError, match="kernel must be"):
        cuda.forward(*args, kernel="wmma")
    with pytest.raises(RuntimeError, match="kernel='tensor_core' needs float16 / bfloat16"):
        cuda.backward(torch.zeros(1, 10, 9, 64, device="cuda"), *args, kernel="tensor_core")
    assert torch.equal(cuda.forward(*args, kernel="auto"), cuda.forward(*args, kernel="cuda_core"))
    low = _cast(args, torch.float16)
    assert torch.equal(cuda.forward(*low), cuda.forward(*low, kernel="tensor_core"))
    grad = torch.randn(1, 10, 9, 64, device="cuda").half()
    for a, b in zip(cuda.backward(grad, *low), cuda.backward(grad, *low, kernel="tensor_core")):
        assert torch.equal(a, b)


@gpu_test
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
def test_without_qkv_bias(pad_order):
    qkv, table, _ = _inputs(2, 10, 9, 2, 32, (7, 7))
    _, _, dbias = check_fp32(_args(qkv, table, None, 2, (7, 7), (3, 3), pad_order))
    assert dbias is None


@gpu_test
def test_non_contiguous_inputs():
    heads, d = 2, 32
    big = torch.randn(1, 12, 11, 3 * heads * d + 8, device="cuda")
    qkv = big[:, 1:11, 2:11, 4:4 + 3 * heads * d]  # a slice of a bigger tensor
    assert not qkv.is_contiguous()
    _, table, qkv_bias = _inputs(1, 10, 9, heads, d, (7, 7))
    table_t = table.t().contiguous().t()  # same values, transposed memory
    assert not table_t.is_contiguous()
    args = _args(qkv, table_t, qkv_bias, heads, (7, 7), (3, 3), "roll_then_pad")
    grad = torch.randn(1, 10, 9, 2 * heads * d, device="cuda")[..., ::2]
    assert not grad.is_contiguous()
    got = check_fp32(args, grad)
    assert got[0].shape == qkv.shape
    plain = _args(qkv.contiguous(), table, qkv_bias, heads, (7, 7), (3, 3), "roll_then_pad")
    assert torch.equal(cuda.forward(*args), cuda.forward(*plain))
    for a, b in zip(got, cuda.backward(grad.contiguous(), *plain)):
        assert torch.equal(a, b)


@gpu_test
def test_padding_queries_give_no_q_gradient_to_qkv_bias():
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    _, _, dbias = cuda.backward(torch.randn(1, 10, 9, 64, device="cuda"), *args)
    assert torch.equal(dbias[:64], torch.zeros(64, device="cuda"))
    assert dbias[64:].abs().min() > 0


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_backward_is_bitwise_deterministic(dtype):
    # Enough windows that the column kernel groups several windows per CTA (B * nW > 1024).
    qkv, table, qkv_bias = _inputs(24, 56, 56, 3, 32, (7, 7), dtype=dtype)
    args = _args(qkv, table, qkv_bias, 3, (7, 7), (3, 3), "pad_then_roll")
    grad = torch.randn(24, 56, 56, 96, device="cuda").to(dtype)
    first, second = cuda.backward(grad, *args), cuda.backward(grad, *args)
    for name, x, y in zip(("qkv", "bias_table", "qkv_bias"), first, second):
        assert torch.equal(x, y), f"{name} differs between two identical backward runs"


@gpu_test
def test_many_windows_per_cta_matches_reference():
    """B * nW = 2048 > 1024 windows: each column-kernel CTA sums two windows' partials."""
    qkv, table, qkv_bias = _inputs(32, 56, 56, 1, 16, (7, 7))
    check_fp32(_args(qkv, table, qkv_bias, 1, (7, 7), (3, 3), "roll_then_pad"))


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_matches_triton(dtype):
    from semask_kernels.ops.shifted_window_attention import triton
    if triton.available() is not None:
        pytest.skip(f"Triton backend unavailable: {triton.available()}")
    qkv, table, qkv_bias = _inputs(2, 20, 19, 3, 32, (7, 7), dtype=dtype)
    args = _args(qkv, table, qkv_bias, 3, (7, 7), (3, 3), "pad_then_roll")
    grad = torch.randn(2, 20, 19, 96, device="cuda").to(dtype)
    pairs = [("output", cuda.forward(*args), triton.forward(*args))]
    pairs += list(zip(("qkv", "bias_table", "qkv_bias"), cuda.backward(grad, *args), triton.backward(grad, *args)))
    for name, a, b in pairs:
        scale = 1.0 if name in ("output", "qkv") else _summed_scale(b.float())
        assert_close(a.float(), b.float(), dtype, name=name, scale=scale)


@gpu_test
@pytest.mark.parametrize("mask_value", [-100.0, float("-inf")])
def test_mask_value(mask_value):
    """-inf masking: every row keeps its own region, so no row is fully masked."""
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7))
    check_fp32(_args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "pad_then_roll", mask_value))


@gpu_test
def test_public_op_autograd_through_cuda_backend():
    qkv, table, qkv_bias = _inputs(2, 10, 9, 2, 32, (7, 7))
    leaves = [t.clone().requires_grad_() for t in (qkv, table, qkv_bias)]
    out = sk.shifted_window_attention(leaves[0], leaves[1], num_heads=2, window_size=7, shift_size=3,
                                      qkv_bias=leaves[2], pad_order="pad_then_roll", backend="cuda")
    grad = torch.randn_like(out)
    out.backward(grad)
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "pad_then_roll")
    assert_close(out, reference.forward(*args), name="output")
    for name, leaf, e in zip(("qkv", "bias_table", "qkv_bias"), leaves, reference.backward(grad, *args)):
        assert_close(leaf.grad, e, name=name, scale=1.0 if name == "qkv" else _summed_scale(e))


@gpu_test
def test_auto_picks_a_fused_backend_on_gpu(monkeypatch):
    monkeypatch.setenv("SEMASK_ALLOW_UNVERIFIED", "1")  # auto picks fused backends only once verified (or allowed)
    from semask_kernels import backends
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7))
    assert backends.choose_backend(OP, "auto", *_args(qkv, table, qkv_bias, 2, (7, 7), (3, 3),
                                                      "roll_then_pad")) in ("triton", "cuda")  # fused, not reference
    qkv24, table24, _ = _inputs(1, 10, 9, 2, 24, (7, 7))
    assert "head dim" in cuda.supports(*_args(qkv24, table24, None, 2, (7, 7), (3, 3), "roll_then_pad"))
    assert "dtype" in cuda.supports(*_args(qkv.double(), table.double(), None, 2, (7, 7), (3, 3),
                                           "roll_then_pad"))


@gpu_test
def test_empty_inputs():
    qkv, table, qkv_bias = _inputs(0, 10, 9, 2, 32, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    assert cuda.forward(*args).shape == (0, 10, 9, 64)
    dqkv, dtable, dbias = cuda.backward(torch.zeros(0, 10, 9, 64, device="cuda"), *args)
    assert dqkv.shape == qkv.shape and dtable.shape == table.shape and dbias.shape == qkv_bias.shape
    assert not dtable.any() and not dbias.any()


@gpu_test
def test_argument_errors_name_the_argument():
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7))
    op = torch.ops.semask_kernels.shifted_window_attention_forward
    with pytest.raises(RuntimeError, match="bias_table"):
        op(*_args(qkv, table[:-1], qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="bias_table"):
        op(*_args(qkv, table.half(), qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="bias_table"):
        op(*_args(qkv, table.cpu(), qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="qkv_bias"):
        op(*_args(qkv, table, qkv_bias[:-1], 2, (7, 7), (3, 3), "roll_then_pad"))
    qkv24, table24, _ = _inputs(1, 10, 9, 2, 24, (7, 7))
    with pytest.raises(RuntimeError, match="head dim"):
        op(*_args(qkv24, table24, None, 2, (7, 7), (3, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="qkv.size"):
        op(*_args(qkv, table.repeat(1, 2)[:, :3], qkv_bias, 3, (7, 7), (3, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="shift_size"):
        op(*_args(qkv, table, qkv_bias, 2, (7, 7), (7, 3), "roll_then_pad"))
    with pytest.raises(RuntimeError, match="pad_order"):
        op(*_args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "pad"))
    with pytest.raises(RuntimeError, match="grad"):
        torch.ops.semask_kernels.shifted_window_attention_backward(
            torch.zeros(1, 10, 9, 32, device="cuda"), *_args(qkv, table, qkv_bias, 2, (7, 7), (3, 3),
                                                             "roll_then_pad"))


@gpu_test
def test_unaligned_inputs_give_the_same_bits():
    """The tensor-core kernels copy 16 bytes at a time only from 16-byte aligned qkv / qkv_bias / grad;
    contiguous views 2 bytes off take the element-wise copies, with the same result."""
    def unaligned(t):
        flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
        flat[1:] = t.flatten()
        return flat[1:].view(t.shape)

    qkv, table, qkv_bias = _inputs(2, 20, 19, 3, 32, (7, 7), dtype=torch.bfloat16)
    grad = torch.randn(2, 20, 19, 96, device="cuda").bfloat16()
    aligned = _args(qkv, table, qkv_bias, 3, (7, 7), (3, 3), "pad_then_roll")
    for args, g in [(_args(unaligned(qkv), table, qkv_bias, 3, (7, 7), (3, 3), "pad_then_roll"), grad),
                    (_args(qkv, table, unaligned(qkv_bias), 3, (7, 7), (3, 3), "pad_then_roll"), grad),
                    (aligned, unaligned(grad))]:
        assert torch.equal(cuda.forward(*args, kernel="tensor_core"), cuda.forward(*aligned, kernel="tensor_core"))
        for a, b in zip(cuda.backward(g, *args, kernel="tensor_core"),
                        cuda.backward(grad, *aligned, kernel="tensor_core")):
            assert torch.equal(a, b)
