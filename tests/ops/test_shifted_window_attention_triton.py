"""shifted_window_attention, Triton backend: what is specific to it (the padding tokens' gradient, launch
configurations, limits, dispatch, GPU sizes, the patched timm Swin).

Its forward and gradients against the reference on every case of the spec (tests/ops/test_conformance.py), layouts,
determinism and opcheck are in the conformance suite. On the CPU the kernels run under the Triton interpreter
(TRITON_INTERPRET=1 set before the import), so shapes here are small.
"""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, _triton_utils, backends
from semask_kernels.kernels import window_attention as wa
from semask_kernels.ops.shifted_window_attention import triton
from semask_kernels.ops.shifted_window_attention.spec import SPEC, inputs
from tests.ops.conformance import check
from tests.utils import TOLERANCES

OP = "shifted_window_attention"
interpreted = pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                                 reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)")


def _inputs(b, h, w, heads, d, window, dtype=torch.float32, device="cpu", bias=True):
    """(qkv, bias_table, qkv_bias) of the spec's ``inputs``."""
    call = inputs(b, h, w, heads, d, window, bias=bias, dtype=dtype, device=device)
    return call.kwargs["qkv"], call.kwargs["bias_table"], call.kwargs["qkv_bias"]


def _args(qkv, table, qkv_bias, heads, window, shift, pad_order):
    d = qkv.shape[-1] // 3 // heads
    return (qkv, table, qkv_bias, heads, list(window), list(shift), d ** -0.5, pad_order, -100.0)


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
    """Several key blocks (12x12) and partial sums of several programs, beyond the conformance suite's first case."""
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
    check(SPEC, "triton", inputs(b, *hw, 2, 16, window, (3, 2), "roll_then_pad"))


def test_dispatch(monkeypatch):
    """Triton runs CPU tensors only under the interpreter and only when named; auto on the CPU is the torch path."""
    qkv, table, qkv_bias = _inputs(1, 10, 9, 2, 16, (7, 7))
    args = _args(qkv, table, qkv_bias, 2, (7, 7), (3, 3), "roll_then_pad")
    assert backends.choose_backend(OP, "auto", *args) == "torch"
    if _triton_utils.INTERPRETED and _env.triton_interpret():
        assert backends.choose_backend(OP, "triton", *args) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run: .*TRITON_INTERPRET"):
        sk.shifted_window_attention(qkv, table, num_heads=2, window_size=7, shift_size=3, backend="triton")
    assert backends.choose_backend(OP, "auto", *args) == "torch"


# ------------------------------------------------------------------------------------------------ on a CUDA GPU

SWIN_T = [(56, 56, 3), (28, 28, 6), (14, 14, 12), (7, 7, 24)]  # 224² input: (H, W, heads) of the four stages


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("h,w,heads", SWIN_T + [(128, 128, 3), (16, 16, 24)])  # + 512² stage 1 and 4 (padded)
def test_gpu_swin_t_shapes(h, w, heads, pad_order, dtype):
    shift = (3, 3) if min(h, w) > 7 else (0, 0)
    check(SPEC, "triton", inputs(2, h, w, heads, 32, (7, 7), shift, pad_order, device="cuda"), dtype, rule="bounds")


@pytest.mark.gpu
@pytest.mark.parametrize("window,d", [((12, 12), 32), ((14, 14), 32), ((7, 7), 64), ((7, 7), 128), ((12, 12), 128)])
def test_gpu_windows_and_head_dims(window, d):
    call = inputs(2, 30, 27, 4, d, window, (window[0] // 2, window[1] // 2), "pad_then_roll", device="cuda")
    check(SPEC, "triton", call, torch.float16, rule="bounds")


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
