"""shifted_window_attention, Triton backend: forward and the three gradients against the float32 reference.

On the CPU the kernels run under the Triton interpreter (TRITON_INTERPRET=1 set before the import), so the shapes
here are small; the ``gpu`` tests repeat the checks on CUDA tensors at Swin-T sizes.
"""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, _triton_utils, backends
from semask_kernels.ops.shifted_window_attention import reference, triton
from semask_kernels.kernels import window_attention as wa
from tests.utils import TOLERANCES, assert_close

OP = "shifted_window_attention"
interpreted = pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                                 reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)")


def _inputs(b, h, w, heads, d, window, dtype=torch.float32, device="cpu", bias=True):
    qkv = torch.randn(b, h, w, 3 * heads * d, device=device).to(dtype)
    table = (0.5 * torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, device=device)).to(dtype)
    qkv_bias = (0.5 * torch.randn(3 * heads * d, device=device)).to(dtype) if bias else None
    return qkv, table, qkv_bias


def _args(qkv, table, qkv_bias, heads, window, shift, pad_order):
    d = qkv.shape[-1] // 3 // heads
    return (qkv, table, qkv_bias, heads, list(window), list(shift), d ** -0.5, pad_order, -100.0)


def _fp32(args):
    return tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)


def _summed_scale(t: torch.Tensor) -> float:
    """Gradients summed over many tokens (bias table, qkv_bias) are larger than unit scale."""
    return max(1.0, float(t.abs().max()))


def check_against_reference(args, grad=None):
    """Forward and every gradient of the Triton backend against the reference run in float32 on the same data."""
    dtype = args[0].dtype
    exact = _fp32(args)
    expected = reference.forward(*exact)
    out = triton.forward(*args)
    assert out.dtype == dtype and out.shape == expected.shape and out.is_contiguous()
    assert_close(out, expected, dtype, name="output")
    grad = torch.randn_like(expected) if grad is None else grad
    got = triton.backward(grad.to(dtype), *args)
    want = reference.backward(grad, *exact)
    assert len(got) == 3
    for name, g, e in zip(("qkv", "bias_table", "qkv_bias"), got, want):
        if e is None:
            assert g is None, f"{name}: expected None"
            continue
        assert g.dtype == dtype and g.shape == e.shape, name
        assert_close(g, e, dtype, name=name, scale=1.0 if name == "qkv" else _summed_scale(e))
    return got


# (B, H, W, window, shift): padding on both axes, shift 0, a map smaller than the window, a non-square window,
# a shift along one axis only, an exact multiple, a 1x1 map.
CASES = [
    (1, 10, 9, (7, 7), (3, 3)),
    (1, 10, 9, (7, 7), (0, 0)),
    (2, 5, 3, (7, 7), (3, 3)),
    (1, 9, 13, (4, 6), (2, 3)),
    (1, 8, 11, (4, 4), (0, 2)),
    (1, 14, 7, (7, 7), (3, 3)),
    (1, 1, 1, (2, 2), (1, 1)),
]


@interpreted
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("b,h,w,window,shift", CASES)
def test_matches_reference(b, h, w, window, shift, pad_order):
    qkv, table, qkv_bias = _inputs(b, h, w, 2, 16, window)
    check_against_reference(_args(qkv, table, qkv_bias, 2, window, shift, pad_order))


@interpreted
@pytest.mark.parametrize("d", [16, 32, 64, 128, 24])
def test_head_dims(d):
    heads = 1 if d >= 64 else 2
    qkv, table, qkv_bias = _inputs(1, 9, 8, heads, d, (7, 7))
    check_against_reference(_args(qkv, table, qkv_bias, heads, (7, 7), (3, 3), "pad_then_roll"))


@interpreted
@pytest.mark.parametrize("window,hw,shift,pad_order", [((12, 12), (13, 12), (6, 6), "roll_then_pad"),
                                                      ((14, 14), (14, 15), (7, 7), "pad_then_roll")])
def test_large_windows(window, hw, shift, pad_order):
    """N = 144 and 196: several key blocks, the separate dQ kernel, tile tails."""
    qkv, table, qkv_bias = _inputs(1, *hw, 1, 16, window)
    check_against_reference(_args(qkv, table, qkv_bias, 1, window, shift, pad_order))


@interpreted
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
def test_low_precision(dtype, pad_order):
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 32, (7, 7), dtype=dtype)
    check_against_reference(_args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), pad_order))


@interpreted
def test_non_contiguous_qkv():
    heads, d = 2, 16
    big = torch.randn(1, 12, 11, 3 * heads * d + 8)
    qkv = big[:, 1:11, 2:11, 4:4 + 3 * heads * d]  # a slice of a bigger tensor
    assert not qkv.is_contiguous()
    _, table, qkv_bias = _inputs(1, 10, 9, heads, d, (7, 7))
    got = check_against_reference(_args(qkv, table, qkv_bias, heads, (7, 7), (3, 3), "roll_then_pad"))
    assert got[0].shape == qkv.shape
    permuted = torch.randn(1, 3 * heads * d, 9, 10).permute(0, 3, 2, 1)  # channels-first memory
    check_against_reference(_args(permuted, table, None, heads, (7, 7), (0, 0), "pad_then_roll"))


@interpreted
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
def test_without_qkv_bias(pad_order):
    qkv, table, _ = _inputs(1, 10, 9, 2, 16, (7, 7))
    dqkv, dtable, dbias = check_against_reference(_args(qkv, table, None, 2, (7, 7), (3, 3), pad_order))
    assert dbias is None


@interpreted
def test_padding_queries_give_qkv_bias_no_q_gradient():
    """Padded queries are cropped from the output: the q part of d qkv_bias is exactly zero; k, v parts are not."""
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 16, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    _, _, dbias = triton.backward(torch.randn(1, 10, 9, 32), *args)
    assert torch.equal(dbias[:32], torch.zeros(32))
    assert dbias[32:].abs().min() > 0


@interpreted
@pytest.mark.parametrize("b,window,hw,heads", [(3, (7, 7), (10, 9), 2), (1, (12, 12), (13, 12), 1)])
def test_backward_is_bitwise_deterministic(b, window, hw, heads):
    qkv, table, qkv_bias = _inputs(b, *hw, heads, 16, window)
    args = _args(qkv, table, qkv_bias, heads, window, (window[0] // 2, window[1] // 2), "pad_then_roll")
    grad = torch.randn(b, *hw, heads * 16)
    first, second = triton.backward(grad, *args), triton.backward(grad, *args)
    for name, x, y in zip(("qkv", "bias_table", "qkv_bias"), first, second):
        assert torch.equal(x, y), f"{name} differs between two identical backward runs"


@interpreted
@pytest.mark.parametrize("b,window,hw", [(2, (7, 7), (10, 9)), (1, (12, 12), (13, 12))])
def test_several_windows_per_program(monkeypatch, b, window, hw):
    """Force the multi-window loop that real sizes use (few programs wanted), with a ragged last group."""
    monkeypatch.setattr(wa, "TARGET_PROGRAMS", 3)
    monkeypatch.setattr(_triton_utils, "_CONFIGS", {})
    n_windows = b * -(-hw[0] // window[0]) * -(-hw[1] // window[1])
    cfg = wa.config(window[0] * window[1], 16, 16, n_windows, 2, torch.float32)
    assert cfg.wpp > 1 and cfg.wpp_kv > 1 and n_windows % cfg.wpp
    qkv, table, qkv_bias = _inputs(b, *hw, 2, 16, window)
    check_against_reference(_args(qkv, table, qkv_bias, 2, window, (3, 2), "roll_then_pad"))


@interpreted
def test_autograd_through_the_op():
    qkv, table, qkv_bias = (t.requires_grad_() for t in _inputs(1, 10, 9, 2, 16, (7, 7)))
    kw = dict(num_heads=2, window_size=7, shift_size=3, qkv_bias=qkv_bias, pad_order="pad_then_roll")
    got = sk.shifted_window_attention(qkv, table, backend="triton", **kw)
    expected = sk.shifted_window_attention(qkv, table, backend="reference", **kw)
    assert_close(got, expected, name="output")
    g = torch.randn_like(got)
    for name, a, e in zip(("qkv", "bias_table", "qkv_bias"), torch.autograd.grad(got, (qkv, table, qkv_bias), g),
                          torch.autograd.grad(expected, (qkv, table, qkv_bias), g)):
        assert_close(a, e, name=name, scale=_summed_scale(e))


@interpreted
def test_opcheck():
    qkv, table, qkv_bias = _inputs(1, 5, 4, 1, 16, (4, 3))
    op = torch.ops.semask_kernels.shifted_window_attention
    torch.library.opcheck(op, (qkv, table, qkv_bias, 1, [4, 3], [2, 1], 0.25, "pad_then_roll", -100.0, "triton"))


def test_dispatch(monkeypatch):
    """Triton runs CPU tensors only under the interpreter and only when named; auto on the CPU is the reference."""
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 16, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    assert backends.choose_backend(OP, "auto", *args) == "torch"
    if _triton_utils.INTERPRETED and _env.triton_interpret():
        assert backends.choose_backend(OP, "triton", *args) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run: .*TRITON_INTERPRET"):
        sk.shifted_window_attention(qkv, table, num_heads=2, window_size=7, shift_size=3, backend="triton")
    assert backends.choose_backend(OP, "auto", *args) == "torch"


@interpreted
def test_declines_what_it_cannot_run_with_a_reason():
    qkv, table, _ = _inputs(1, 4, 4, 1, 8, (2, 2), dtype=torch.float64)
    assert "float64" in triton.supports(*_args(qkv, table, None, 1, (2, 2), (1, 1), "roll_then_pad"))
    assert sk.shifted_window_attention(qkv, table, num_heads=1, window_size=2, shift_size=1).dtype == torch.float64
    qkv, table, _ = _inputs(1, 4, 4, 1, 264, (2, 2))
    assert "head dim 264" in triton.supports(*_args(qkv, table, None, 1, (2, 2), (1, 1), "roll_then_pad"))
    qkv, table, _ = _inputs(1, 4, 4, 1, 8, (33, 33))
    assert "N=1089" in triton.supports(*_args(qkv, table, None, 1, (33, 33), (0, 0), "roll_then_pad"))


@interpreted
@pytest.mark.skipif(not _env.test_sweep(), reason="randomized sweep: set SEMASK_TEST_SWEEP=1")
def test_random_shapes_sweep():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(b=st.integers(1, 2), h=st.integers(1, 15), w=st.integers(1, 15), wh=st.integers(1, 8),
                      ww=st.integers(1, 8), heads=st.integers(1, 3), d=st.sampled_from([8, 16, 20, 32]),
                      data=st.data(), pad_order=st.sampled_from(["roll_then_pad", "pad_then_roll"]),
                      bias=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    def run(b, h, w, wh, ww, heads, d, data, pad_order, bias, dtype):
        shift = (data.draw(st.integers(0, wh - 1)), data.draw(st.integers(0, ww - 1)))
        qkv, table, qkv_bias = _inputs(b, h, w, heads, d, (wh, ww), dtype=dtype, bias=bias)
        check_against_reference(_args(qkv, table, qkv_bias, heads, (wh, ww), shift, pad_order))

    run()


# ------------------------------------------------------------------------------------------------ on a CUDA GPU

SWIN_T = [(56, 56, 3), (28, 28, 6), (14, 14, 12), (7, 7, 24)]  # 224² input: (H, W, heads) of the four stages


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("h,w,heads", SWIN_T + [(128, 128, 3), (16, 16, 24)])  # + 512² stage 1 and 4 (padded)
def test_gpu_swin_t_shapes(h, w, heads, pad_order, dtype):
    shift = (3, 3) if min(h, w) > 7 else (0, 0)
    qkv, table, qkv_bias = _inputs(2, h, w, heads, 32, (7, 7), dtype=dtype, device="cuda")
    check_against_reference(_args(qkv, table, qkv_bias, heads, (7, 7), shift, pad_order))


@pytest.mark.gpu
@pytest.mark.parametrize("window,d", [((12, 12), 32), ((14, 14), 32), ((7, 7), 64), ((7, 7), 128), ((12, 12), 128)])
def test_gpu_windows_and_head_dims(window, d):
    qkv, table, qkv_bias = _inputs(2, 30, 27, 4, d, window, dtype=torch.float16, device="cuda")
    check_against_reference(_args(qkv, table, qkv_bias, 4, window, (window[0] // 2, window[1] // 2), "pad_then_roll"))


@pytest.mark.gpu
def test_gpu_deterministic_and_auto_picks_a_fused_backend(monkeypatch):
    monkeypatch.setenv("SEMASK_ALLOW_UNVERIFIED", "1")  # auto picks fused backends only once verified (or allowed)
    qkv, table, qkv_bias = _inputs(2, 56, 56, 3, 32, (7, 7), dtype=torch.float16, device="cuda")
    args = _args(qkv, table, qkv_bias, 3, (7, 7), (3, 3), "roll_then_pad")
    assert backends.choose_backend(OP, "auto", *args) in ("cuda", "triton")
    grad = torch.randn(2, 56, 56, 96, device="cuda", dtype=torch.float16)
    first, second = triton.backward(grad, *args), triton.backward(grad, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_patched_timm_swin_matches_stock():
    timm = pytest.importorskip("timm")
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        expected = model(x)
        sk.patch_timm_swin(model, backend="triton")
        got = model(x)
    tol = TOLERANCES[torch.float32][0] * 100  # 24 blocks of accumulated fp32 rounding
    assert (got - expected).abs().max() < tol * max(1.0, float(expected.abs().max()))
