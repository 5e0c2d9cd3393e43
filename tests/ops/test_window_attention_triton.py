"""window_attention, Triton backend: what is specific to it (launch configurations, limits, dispatch, GPU sizes).

Its forward and gradients against the reference on every case of the spec, layouts, determinism and opcheck are
in test_conformance.py. On the CPU the kernels run under the Triton interpreter, so shapes are small.
"""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, _triton_utils, backends
from semask_kernels.kernels import window_attention as wa
from semask_kernels.ops.window_attention import triton
from semask_kernels.ops.window_attention.spec import SPEC, inputs
from tests.ops.conformance import check

OP = "window_attention"
interpreted = pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                                 reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)")


def _inputs(*args, **kwargs) -> tuple:
    """The backend arguments (q, k, v, bias_table, [Wh, Ww], mask, scale) of the spec's ``inputs``."""
    return SPEC.arguments(inputs(*args, **kwargs))


@interpreted
def test_several_windows_per_program(monkeypatch):
    """Force the multi-window loop (used at real sizes) with a ragged last group."""
    monkeypatch.setattr(wa, "TARGET_PROGRAMS", 3)
    monkeypatch.setattr(_triton_utils, "_CONFIGS", {})
    cfg = wa.config(49, 16, 16, 10, 2, torch.float32)
    assert cfg.wpp > 1 and 10 % cfg.wpp
    check(SPEC, "triton", inputs(10, 2, (7, 7), 16, n_mask=5))
    check(SPEC, "triton", inputs(3, 1, (12, 12), 16, n_mask=3))


def test_dispatch(monkeypatch):
    """Triton runs CPU tensors only under the interpreter and only when named; auto on the CPU is the torch path."""
    args = _inputs(2, 1, (2, 2), 8)
    assert backends.choose_backend(OP, "auto", *args) == "torch"
    if _triton_utils.INTERPRETED and _env.triton_interpret():
        assert backends.choose_backend(OP, "triton", *args) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run: .*TRITON_INTERPRET"):
        sk.window_attention(*args[:3], backend="triton")
    assert backends.choose_backend(OP, "auto", *args) == "torch"


@interpreted
def test_the_kernel_family_limits_are_named_through_both_attention_ops():
    """The shared kernels' limits (tokens per window, head dim) reach both ops' supports() as reasons."""
    from semask_kernels.ops.shifted_window_attention import triton as swa_triton
    assert "head dim 300" in triton.supports(*_inputs(1, 1, (2, 2), 8, dv=300))
    q = torch.randn(1, 1, 1025, 8)
    assert "N=1025" in triton.supports(q, q, q, None, [1025, 1], None, 1.0)
    qkv, table = torch.randn(1, 4, 4, 3 * 264), torch.randn(9, 1)
    assert "head dim 264" in swa_triton.supports(qkv, table, None, 1, [2, 2], [1, 1], 1.0, "roll_then_pad", -100.0)
    qkv, table = torch.randn(1, 4, 4, 3 * 8), torch.randn(65 * 65, 1)
    assert "N=1089" in swa_triton.supports(qkv, table, None, 1, [33, 33], [0, 0], 1.0, "roll_then_pad", -100.0)


# ------------------------------------------------------------------------------------------------ on a CUDA GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b_,heads,n_mask", [(128, 3, 64), (32, 6, 16), (8, 12, 4), (2, 24, 0)])  # Swin-T, batch 2
def test_gpu_swin_t_shapes(b_, heads, n_mask, dtype):
    check(SPEC, "triton", inputs(b_, heads, (7, 7), 32, n_mask=n_mask, device="cuda"), dtype, rule="bounds")


@pytest.mark.gpu
@pytest.mark.parametrize("window,d,dv", [((12, 12), 32, 32), ((14, 14), 32, 32), ((7, 7), 128, 128),
                                         ((12, 12), 128, 64), ((6, 10), 24, 40)])
def test_gpu_windows_and_head_dims(window, d, dv):
    check(SPEC, "triton", inputs(16, 4, window, d, dv, n_mask=4, device="cuda"), torch.float16, rule="bounds")


@pytest.mark.gpu
def test_gpu_deterministic():
    args = _inputs(2048, 3, (7, 7), 32, n_mask=64, dtype=torch.float16, device="cuda")
    grad = torch.randn(2048, 3, 49, 32, device="cuda", dtype=torch.float16)
    first, second = triton.backward(grad, *args), triton.backward(grad, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
