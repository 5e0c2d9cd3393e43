"""The Triton backend of prior_map_decode: what is specific to it (memory layouts of maps and gradient, no
aliasing, limits, dispatch, SeMask-T shapes on a GPU).

Forward and gradients against the reference on the spec's level layouts (exact halves, odd sizes, a 1×1 level,
one map, an overshooting composite, six maps), low precision and opcheck are in test_conformance.py. On the CPU
the kernel runs under the Triton interpreter (tests/conftest.py), on small planes.
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.prior_map_decode import triton as pmd_triton
from semask_kernels.ops.prior_map_decode.spec import LEVELS as SIZES
from tests.utils import assert_close, assert_error_within

OP = "prior_map_decode"

# maps[0] size and level sizes: exact halves, odd sizes (ceil), a 1×1 level, two levels, one map, a level whose
# composite overshoots maps[0] (the final resize shrinks), and six maps (more levels than one launch holds).
def run(backend, maps, grad, align_corners, dtype=None):
    leaves = [m.detach().to(dtype or m.dtype).requires_grad_() for m in maps]
    out = sk.prior_map_decode(leaves, align_corners=align_corners, backend=backend)
    return [out, *torch.autograd.grad(out, leaves, grad.to(out.dtype))]


def make(sizes, b=1, k=2, device="cpu"):
    maps = [torch.randn(b, k, h, w, device=device) for h, w in sizes]
    return maps, torch.randn(b, k, *sizes[0], device=device)


def test_non_contiguous_inputs_give_the_same_bits():
    maps, grad = make(SIZES["odd-4-levels"])
    strided = [torch.stack([m, m], dim=-1).flatten(-2)[..., ::2] for m in maps]  # W stride 2
    channels_last = [m.to(memory_format=torch.channels_last) for m in maps]
    expected = pmd_triton.forward(maps, False)
    for variant in (strided, channels_last):
        assert not variant[1].is_contiguous()
        assert torch.equal(pmd_triton.forward(variant, False), expected)
    sizes = [tuple(m.shape[-2:]) for m in maps]
    grad_nc = grad.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not grad_nc.is_contiguous()
    for a, e in zip(pmd_triton.backward(grad_nc, sizes, False), pmd_triton.backward(grad, sizes, False)):
        assert torch.equal(a, e)


def test_backward_is_deterministic_and_never_aliases():
    maps, grad = make(SIZES["odd-4-levels"])
    sizes = [tuple(m.shape[-2:]) for m in maps]
    first = pmd_triton.backward(grad, sizes, True)
    second = pmd_triton.backward(grad, sizes, True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert first[0].data_ptr() != grad.data_ptr()


def test_dispatch_on_cpu():
    maps, _ = make(SIZES["2-levels"])
    assert backends.why_not(OP, "triton", maps, False) is None  # runs under the interpreter, by name
    assert backends.choose_backend(OP, "auto", maps, False) == "torch"  # auto never picks the interpreter
    assert_close(sk.prior_map_decode(maps, backend="triton"), sk.prior_map_decode(maps, backend="reference"))


def test_declines_float64_and_empty_batch():
    maps = [torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(1, 2, 2, 2, dtype=torch.float64)]
    assert "float64" in pmd_triton.supports(maps, False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run.*float64"):
        sk.prior_map_decode(maps, backend="triton")
    empty = [torch.randn(0, 3, 8, 8), torch.randn(0, 3, 4, 4)]
    assert pmd_triton.forward(empty, False).shape == (0, 3, 8, 8)
    assert [g.shape for g in pmd_triton.backward(empty[0], [(8, 8), (4, 4)], False)] == [(0, 3, 8, 8),
                                                                                          (0, 3, 4, 4)]


# ---------------------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_semask_t_512(dtype, align_corners):
    """SeMask-T on a 512² crop: prior maps at 128², 64², 32², 16² with K = 150."""
    maps, grad = make([(128, 128), (64, 64), (32, 32), (16, 16)], b=2, k=150, device="cuda")
    maps = [m.to(dtype).float() for m in maps]
    exact = run("reference", maps, grad, align_corners)
    got = run("triton", maps, grad, align_corners, dtype)
    if dtype == torch.float32:
        for i, (a, e) in enumerate(zip(got, exact)):
            assert_close(a, e, name=f"result {i}", scale=max(1.0, float(e.detach().abs().max())))
    else:
        ref = run("reference", maps, grad, align_corners, dtype)
        for i, (a, r, e) in enumerate(zip(got, ref, exact)):
            assert_error_within(a, r, e, 2.0 if i == 0 else 3.0, name=f"result {i}")
    again = run("triton", maps, grad, align_corners, dtype)
    for a, b in zip(got, again):
        assert torch.equal(a, b)
