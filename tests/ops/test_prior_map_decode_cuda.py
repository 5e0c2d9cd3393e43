"""The CUDA backend of prior_map_decode against the composite bilinear reference (GPU), and its C++ schemas (CPU)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.ops.cuda_marks import gpu_test, needs_ext
from tests.utils import TOLERANCES



# Absolute bounds against a float64 reference on unit-scale data: the project's per-dtype policy.
ATOL = {dtype: bounds[0] for dtype, bounds in TOLERANCES.items()}
DTYPES = list(ATOL)
# (B, K, H0, W0) and level sizes: halves, odd and not-exactly-half sizes, 1×1 levels, a single map.
SHAPES = [
    ((2, 19, 16, 16), [(8, 8), (4, 4), (2, 2)]),
    ((1, 5, 13, 9), [(7, 5), (4, 3), (2, 2)]),
    ((3, 2, 13, 9), [(1, 1), (1, 1), (1, 1)]),
    ((1, 3, 6, 7), [(5, 7), (3, 2)]),
    ((2, 4, 5, 5), []),
]


def reference(maps: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """maps[0] + Σ up_i(maps[i]), up_i = i ×2 bilinear upsamplings then a resize to maps[0]'s size if needed."""
    size = tuple(maps[0].shape[-2:])
    out = maps[0]
    for level, x in enumerate(maps[1:], start=1):
        for _ in range(level):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
        out = out + x
    return out


def make_maps(shape, levels, dtype, seed=0):
    torch.manual_seed(seed)
    b, k, h0, w0 = shape
    sizes = [(h0, w0)] + list(levels)
    return [torch.randn(b, k, h, w, dtype=torch.float64, device="cuda").to(dtype) for h, w in sizes]


# ---- CPU: the C++ schemas -----------------------------------------------------------------------------------

@needs_ext
def test_cpp_op_rejects_cpu_tensors():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError):  # no CPU kernel: a clean error, never a crash
        torch.ops.semask_kernels.prior_map_decode_forward([x], [], [], [], [])
    with pytest.raises(RuntimeError):
        torch.ops.semask_kernels.prior_map_decode_backward(x, [], [], [], [])


# ---- GPU ----------------------------------------------------------------------------------------------------

@gpu_test
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,levels", SHAPES)
def test_forward_matches_reference(shape, levels, dtype, align_corners):
    from semask_kernels.ops.prior_map_decode import cuda
    maps = make_maps(shape, levels, dtype)
    out = cuda.forward(maps, align_corners)
    expected = reference([m.double() for m in maps], align_corners)
    assert out.dtype == dtype and out.shape == maps[0].shape and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=ATOL[dtype])


@gpu_test
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,levels", SHAPES)
def test_backward_matches_autograd(shape, levels, dtype, align_corners):
    from semask_kernels.ops.prior_map_decode import cuda
    maps = [m.detach().double().requires_grad_() for m in make_maps(shape, levels, torch.float64)]
    grad = torch.randn(shape, dtype=torch.float64, device="cuda")
    reference(maps, align_corners).backward(grad)
    sizes = [tuple(m.shape[-2:]) for m in maps]
    grads = cuda.backward(grad.to(dtype), sizes, align_corners)
    assert len(grads) == len(maps)
    for i, (g, m) in enumerate(zip(grads, maps)):
        assert g.dtype == dtype and g.shape == m.shape, f"grad {i}"
        # Level gradients sum up to (2^i)² taps of grad; scale the bound with the sum of |weights|.
        scale = max(1.0, float((m.grad.abs().max())))
        torch.testing.assert_close(g.double(), m.grad, rtol=0, atol=ATOL[dtype] * scale, msg=f"grad of maps[{i}]")


@gpu_test
def test_non_contiguous_inputs():
    from semask_kernels.ops.prior_map_decode import cuda
    maps = make_maps((2, 3, 13, 9), [(7, 5), (4, 3)], torch.float32)
    strided = [torch.stack([m, m], dim=-1).flatten(-2)[..., ::2] for m in maps]  # same values, W stride 2
    channels_last = [m.to(memory_format=torch.channels_last) for m in maps]
    expected = cuda.forward(maps, False)
    for variant in (strided, channels_last):
        assert not variant[1].is_contiguous()
        torch.testing.assert_close(cuda.forward(variant, False), expected, rtol=0, atol=0)
    grad = torch.randn(2, 3, 13, 9, device="cuda").transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not grad.is_contiguous()
    sizes = [tuple(m.shape[-2:]) for m in maps]
    for g, e in zip(cuda.backward(grad, sizes, False), cuda.backward(grad.contiguous(), sizes, False)):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_backward_is_deterministic(dtype):
    from semask_kernels.ops.prior_map_decode import cuda
    torch.manual_seed(3)
    grad = torch.randn(4, 19, 64, 48, device="cuda", dtype=dtype)
    sizes = [(64, 48), (32, 24), (16, 12), (8, 6)]
    first = cuda.backward(grad, sizes, False)
    second = cuda.backward(grad, sizes, False)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert first[0].data_ptr() != grad.data_ptr()  # a copy, never an alias of the input


@gpu_test
def test_empty_batch_and_errors():
    from semask_kernels.ops.prior_map_decode import cuda
    maps = [torch.randn(0, 3, 8, 8, device="cuda"), torch.randn(0, 3, 4, 4, device="cuda")]
    assert cuda.forward(maps, False).shape == (0, 3, 8, 8)
    assert [g.shape for g in cuda.backward(maps[0], [(8, 8), (4, 4)], False)] == [(0, 3, 8, 8), (0, 3, 4, 4)]
    mixed = [torch.randn(1, 3, 8, 8, device="cuda"), torch.randn(1, 3, 4, 4, device="cuda", dtype=torch.float64)]
    with pytest.raises(RuntimeError, match=r"maps\[1\]"):
        cuda.forward(mixed, False)
    wrong_k = [torch.randn(1, 3, 8, 8, device="cuda"), torch.randn(1, 4, 4, 4, device="cuda")]
    with pytest.raises(RuntimeError, match=r"maps\[1\]"):
        cuda.forward(wrong_k, False)
    on_cpu = [torch.randn(1, 3, 8, 8, device="cuda"), torch.randn(1, 3, 4, 4)]
    with pytest.raises(RuntimeError, match=r"maps\[1\]"):
        cuda.forward(on_cpu, False)
