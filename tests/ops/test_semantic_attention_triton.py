"""The Triton backend of semantic_attention: what is specific to it (large logits, memory layouts, limits,
dispatch, GPU stage shapes and memory).

Forward and every gradient against the reference on the spec's awkward cases (padding on both axes, a map smaller
than the window, a non-square window, a 12×12 window spanning several key blocks, global attention with N not a
multiple of the tile, K = 19 and 150, C over several tiles), opcheck and determinism are in test_conformance.py.
On the CPU the kernels run under the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1).
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops._spec import Call
from semask_kernels.ops.semantic_attention import triton as sa_triton
from semask_kernels.ops.semantic_attention.spec import SPEC
from tests.ops.conformance import check
from tests.utils import assert_close, assert_error_within

OP = "semantic_attention"
NAMES = ("out", "ds", "dk", "dv", "d pad_k", "d pad_v")


def make(b, h, w, k, c, pads, scale=1.0, device="cpu"):
    """fp32 inputs on unit scale (``scale`` multiplies s: larger logits), an upstream gradient."""
    s = torch.randn(b, h, w, k, device=device) * scale
    kk = torch.randn(b, h, w, k, device=device)
    v = torch.randn(b, h, w, c, device=device)
    pk = torch.randn(k, device=device) if pads else None
    pv = torch.randn(c, device=device) if pads else None
    grad = torch.randn(b, h, w, c, device=device)
    return [s, kk, v, pk, pv], grad


def run(backend, tensors, window, grad, dtype=None):
    """(out, *grads of the tensors that are not None) through the public op and autograd."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() if t is not None else None for t in tensors]
    out = sk.semantic_attention(*leaves[:3], window_size=window, pad_k=leaves[3], pad_v=leaves[4],
                                backend=backend)
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], grad.to(out.dtype))
    return [out, *grads]


def names(tensors):
    return [n for n, t in zip(NAMES, [True, *tensors]) if t is not None]


# (B, H, W), K, C, window, pads
def test_large_logits():
    """Unscaled class scores can be large (|s·k| in the hundreds): the fp32 running max keeps it exact."""
    tensors, grad = make(1, 6, 7, 19, 24, True, scale=30.0)
    exact = run("reference", [t.double() if t is not None else None for t in tensors], 7, grad.double())
    got = run("triton", tensors, 7, grad)
    ref = run("reference", tensors, 7, grad)
    for name, a, r, e in zip(names(tensors), got, ref, exact):
        assert torch.isfinite(a).all(), name
        assert_error_within(a, r, e, 3.0, name=name)


def test_non_contiguous_inputs_give_the_same_bits():
    tensors, grad = make(2, 9, 10, 19, 40, True)
    s, k, v, pk, pv = tensors
    wide = torch.randn(2, 9, 10, 2 * 19)
    wide[..., 1::2] = s
    s_nc = wide[..., 1::2]                                     # last-dim stride 2
    k_nc = k.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # channels-first memory
    v_nc = v.transpose(1, 2).contiguous().transpose(1, 2)      # H and W strides swapped
    pk_nc = torch.stack([pk, pk], 1)[:, 0]                     # stride 2
    pv_nc = torch.stack([pv, pv], 1)[:, 1]
    assert not any(t.is_contiguous() for t in (s_nc, k_nc, v_nc, pk_nc, pv_nc))
    for window in (7, None):
        pads = (pk, pv) if window else (None, None)
        pads_nc = (pk_nc, pv_nc) if window else (None, None)
        expected = run("triton", [s, k, v, *pads], window, grad)
        got = run("triton", [s_nc, k_nc, v_nc, *pads_nc], window, grad)
        for name, a, e in zip(names([s, k, v, *pads]), got, expected):
            assert torch.equal(a, e), name


@pytest.mark.parametrize("window", [7, None])
def test_backward_is_deterministic(window):
    tensors, grad = make(1, 9, 10, 150, 200, True)  # K = 150 and two C tiles
    if window is None:
        tensors[3:] = [None, None]
    first = run("triton", tensors, window, grad)
    second = run("triton", tensors, window, grad)
    for name, a, b in zip(names(tensors), first, second):
        assert torch.equal(a, b), name


def test_dispatch_on_cpu():
    tensors, _ = make(1, 5, 6, 19, 20, True)
    s, k, v, pk, pv = tensors
    args = (s, k, v, [4, 4], pk, pv)
    assert backends.why_not(OP, "triton", *args) is None  # runs under the interpreter, by name
    assert backends.choose_backend(OP, "auto", *args) == "torch"  # auto never picks the interpreter
    out = sk.semantic_attention(s, k, v, window_size=4, pad_k=pk, pad_v=pv, backend="triton")
    assert_close(out, sk.semantic_attention(s, k, v, window_size=4, pad_k=pk, pad_v=pv, backend="reference"))


def test_declines_what_it_cannot_run():
    tensors, _ = make(1, 5, 6, 19, 20, False)
    s, k, v = (t.double() for t in tensors[:3])
    assert "float64" in sa_triton.supports(s, k, v, [], None, None)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run.*float64"):
        sk.semantic_attention(s, k, v, backend="triton")
    wide = torch.randn(1, 2, 2, 300)
    assert "K=300" in sa_triton.supports(wide, wide, torch.randn(1, 2, 2, 8), [], None, None)
    assert sk.semantic_attention(s, k, v).dtype == torch.float64  # auto falls back to the reference


def test_empty_batch():
    tensors, grad = make(0, 5, 6, 19, 20, True)
    out, *grads = run("triton", tensors, 4, grad)
    assert out.shape == (0, 5, 6, 20) and [g.shape for g in grads] == [t.shape for t in tensors]


# ---------------------------------------------------------------------------------------------------------- GPU

# SeMask-T at 512² (K = 150): stages 1-2 windowed M=7, stages 3-4 global; SeMask-L at 640²: M=12, global 3-4.
GPU_CASES = {
    "T-stage1-win7": ((2, 128, 128), 150, 96, 7),
    "T-stage2-win7": ((2, 64, 64), 150, 192, 7),
    "T-stage3-global": ((2, 32, 32), 150, 384, None),
    "T-stage4-global": ((2, 16, 16), 150, 768, None),
    "L-stage2-win12": ((1, 80, 80), 150, 384, 12),
    "L-stage3-global": ((1, 40, 40), 150, 768, None),
    "L-stage4-global": ((1, 20, 20), 150, 1536, None),
    "cityscapes-K19-win7": ((1, 48, 96), 19, 96, 7),
}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", list(GPU_CASES))
def test_gpu_stage_shapes(case, dtype):
    shape, k, c, window = GPU_CASES[case]
    tensors, grad = make(*shape, k, c, window is not None, scale=0.3, device="cuda")
    if dtype == torch.float32:
        s, k, v, pk, pv = tensors
        check(SPEC, "triton", Call({"s": s, "k": k, "v": v, "window_size": window, "pad_k": pk, "pad_v": pv},
                                   ("s", "k", "v", "pad_k", "pad_v") if pk is not None else ("s", "k", "v")))
        return
    tensors = [t.to(dtype).float() if t is not None else None for t in tensors]
    exact = run("reference", tensors, window, grad)
    got = run("triton", tensors, window, grad, dtype)
    ref = run("reference", tensors, window, grad, dtype)
    for i, (name, a, r, e) in enumerate(zip(names(tensors), got, ref, exact)):
        assert_error_within(a, r, e, 2.0 if i == 0 else 3.0, name=name)
    again = run("triton", tensors, window, grad, dtype)
    for name, a, b in zip(names(tensors), got, again):
        assert torch.equal(a, b), f"{name} not bitwise repeatable"


@pytest.mark.gpu
def test_gpu_global_memory_is_linear_in_tokens():
    """Global attention over N = 4096 tokens (stage 3 of a 1024² input): forward + backward never hold an
    (N, N) matrix. The shape makes the (B, N, N) scores (64 MiB in bf16) far larger than the linear footprint
    (outputs and gradients, ~10 MiB), so the bound below tells them apart."""
    b, h, w, k, c = 2, 64, 64, 150, 96
    tensors, grad = make(b, h, w, k, c, False, scale=0.3, device="cuda")
    tensors = [t.bfloat16() if t is not None else None for t in tensors]
    run("triton", tensors, None, grad)  # warm-up (compilation)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run("triton", tensors, None, grad)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    n = h * w
    one_score_matrix = b * n * n * 2
    assert extra < one_score_matrix / 2, f"peak extra {extra / 2**20:.1f} MiB, one (B, N, N) bf16 matrix " \
                                         f"{one_score_matrix / 2**20:.1f} MiB"
