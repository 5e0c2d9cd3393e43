"""upsample_cross_entropy, CUDA backend: label dtypes, determinism, agreement with Triton, never allocating the
(B, K, H, W) logits, empty and out-of-range inputs (GPU), and the C++ schemas, argument errors, the backward's
candidate-range rule and capability reasons (CPU).

Loss and d logits against the reference on every shape of the spec in both reductions and both align_corners
(the CUDA-only cases of ``upsample_cross_entropy/spec.py``), low precision and opcheck are in
test_conformance.py; all-ignored, large logits and layouts in test_upsample_cross_entropy.py."""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels.ops._spec import Call
from semask_kernels.ops.upsample_cross_entropy import cuda
from semask_kernels.ops.upsample_cross_entropy.spec import SPEC
from tests.ops import loss_cases
from tests.ops.conformance import check
from tests.ops.cuda_marks import gpu_test, needs_ext
from tests.ops.loss_cases import run, unit
from tests.utils import assert_close

OP = "upsample_cross_entropy"


def make(*args, device="cuda", seed=0, **kw):
    return loss_cases.make(*args, device=device, seed=seed, **kw)


# (B, K, h, w), target (H, W)
# ---- CPU: the C++ schemas, errors and reasons ---------------------------------------------------------------

@needs_ext
def test_cpp_op_rejects_cpu_tensors_naming_the_argument():
    logits, target = make(1, 3, 4, 4, (8, 8), device="cpu")
    with pytest.raises(RuntimeError, match="logits must be a CUDA tensor"):
        torch.ops.semask_kernels.upsample_cross_entropy_forward(logits, target, 255, True, False)
    with pytest.raises(RuntimeError, match="logits must be a CUDA tensor"):
        torch.ops.semask_kernels.upsample_cross_entropy_backward(
            torch.ones(()), logits, target, torch.zeros(1, 8, 8), torch.ones(()), 255, False)


def test_supports_reasons_on_cpu():
    logits, target = make(1, 3, 4, 4, (8, 8), device="cpu")
    assert "needs CUDA tensors" in cuda.supports(logits, target, 255, True, False)


def test_reference_is_auto_choice_on_cpu():
    logits, target = make(1, 3, 4, 4, (8, 8), device="cpu")
    assert sk.upsample_cross_entropy(logits, target).shape == ()
    with pytest.raises(RuntimeError, match="cuda"):
        sk.upsample_cross_entropy(logits, target, backend="cuda")


def _taps(inp: int, out: int, align_corners: bool, dst: torch.Tensor):
    """Python mirror (float32) of the kernels' taps(): torch's bilinear source-index rule."""
    if align_corners:
        scale = torch.tensor(inp - 1, dtype=torch.float32) / (out - 1) if out > 1 else torch.tensor(0.0)
        src = scale * dst.float()
    else:
        scale = torch.tensor(inp, dtype=torch.float32) / out
        src = (scale * (dst.float() + 0.5) - 0.5).clamp(min=0)
    i0 = src.long()
    return i0, torch.where(i0 < inp - 1, i0 + 1, i0)


def _candidates(inp: int, out: int, align_corners: bool, i: int) -> tuple[int, int]:
    """Python mirror of the kernels' candidates(): the output range whose taps may include input index i."""
    import math
    if inp <= 1 or out <= 1:
        return 0, out
    if align_corners:
        r = (out - 1) / (inp - 1)
        first, last = (i - 1) * r, (i + 1) * r
    else:
        r = out / inp
        first, last = (i - 0.5) * r - 0.5, (i + 1.5) * r - 0.5
    lo, hi = max(0, math.floor(first) - 2), min(out, math.ceil(last) + 3)
    return (0 if not align_corners and i <= 1 else lo), hi


@pytest.mark.parametrize("align_corners", [False, True])
def test_candidate_range_rule_covers_every_tap(align_corners):
    """The backward's gather visits, for each low-res index, a range of output coordinates computed by inverting
    the coordinate map: every output whose taps include the index must lie in it (rule mirrored in Python)."""
    sizes = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 97, 128]
    for inp in sizes:
        for out in sizes + [256, 512, 1000]:
            dst = torch.arange(out)
            i0, i1 = _taps(inp, out, align_corners, dst)
            for i in range(inp):
                lo, hi = _candidates(inp, out, align_corners, i)
                members = dst[(i0 == i) | (i1 == i)]
                assert bool(((members >= lo) & (members < hi)).all()), (inp, out, i, lo, hi, members.tolist())


# ---- GPU ----------------------------------------------------------------------------------------------------

@gpu_test
@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16], ids=str)
def test_label_dtypes_and_custom_ignore_index(dtype):
    logits, target = make(2, 7, 4, 6, (9, 11), ignore_frac=0.0)
    ignore = 200 if dtype == torch.uint8 else -100
    target[:, :3] = ignore
    check(SPEC, "cuda", Call({"logits": logits, "target": target.to(dtype), "ignore_index": ignore}, ("logits",)))


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_forward_and_backward_are_bitwise_deterministic(dtype):
    logits, target = make(4, 150, 32, 32, (128, 128))
    logits = logits.to(dtype)
    grad = torch.tensor(1.5, device="cuda", dtype=dtype)
    first = (cuda.forward(logits, target, 255, True, False), cuda.backward(grad, logits, target, 255, True, False))
    second = (cuda.forward(logits, target, 255, True, False), cuda.backward(grad, logits, target, 255, True, False))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@gpu_test
@pytest.mark.parametrize("align_corners", [False, True])
def test_matches_triton(align_corners):
    from semask_kernels.ops.upsample_cross_entropy import triton
    if triton.available() is not None:
        pytest.skip(f"Triton backend unavailable: {triton.available()}")
    logits, target = make(2, 150, 16, 12, (64, 48))
    exact = run("reference", logits, target, align_corners=align_corners)
    got = unit(run("cuda", logits, target, align_corners=align_corners), exact)
    other = unit(run("triton", logits, target, align_corners=align_corners), exact)
    for name, a, b in zip(("loss", "d logits"), got, other):
        assert_close(a, b, name=name)


@gpu_test
def test_never_allocates_full_resolution_logits():
    b, k, h, w, big = 2, 150, 64, 64, 512
    logits, target = make(b, k, h, w, (big, big))
    full_bytes = b * k * big * big * 4  # (B, K, H, W) fp32: 629 MB
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    loss, grad = run("cuda", logits, target)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < full_bytes / 20, (f"peak extra memory {extra / 2**20:.1f} MiB vs the full-resolution logits' "
                                     f"{full_bytes / 2**20:.0f} MiB")
    assert torch.isfinite(loss) and grad.shape == logits.shape


@gpu_test
@pytest.mark.parametrize("avg_non_ignore", [True, False])
def test_empty_batch_matches_reference(avg_non_ignore):
    logits = torch.randn(0, 5, 4, 6, device="cuda", requires_grad=True)
    target = torch.zeros(0, 9, 11, dtype=torch.long, device="cuda")
    got = cuda.forward(logits, target, 255, avg_non_ignore, False)
    from semask_kernels.ops.upsample_cross_entropy import reference
    want = reference.forward(logits, target, 255, avg_non_ignore, False)
    torch.testing.assert_close(got, want.detach(), equal_nan=True)
    assert cuda.backward(torch.tensor(1.0, device="cuda"), logits, target, 255, avg_non_ignore, False).shape == \
        logits.shape


@gpu_test
def test_out_of_range_label_is_nan_not_a_crash():
    logits, target = make(1, 5, 4, 6, (9, 11), ignore_frac=0.0)
    target[0, 0, 0] = 7  # bypasses the Python label check: the C++ op must not read out of bounds
    loss, _, _ = torch.ops.semask_kernels.upsample_cross_entropy_forward(logits, target, 255, True, False)
    torch.cuda.synchronize()
    assert torch.isnan(loss)
    with pytest.raises(ValueError, match="label 7"):  # the public op names it
        sk.upsample_cross_entropy(logits, target, backend="cuda")


@gpu_test
def test_argument_errors_name_the_argument():
    logits, target = make(1, 5, 4, 6, (9, 11))
    fwd = torch.ops.semask_kernels.upsample_cross_entropy_forward
    with pytest.raises(RuntimeError, match="target"):
        fwd(logits, target.float(), 255, True, False)
    with pytest.raises(RuntimeError, match="target"):
        fwd(logits, target[:, None], 255, True, False)
    with pytest.raises(RuntimeError, match="target"):
        fwd(logits, target.cpu(), 255, True, False)
    with pytest.raises(RuntimeError, match="logits"):
        fwd(logits.double(), target, 255, True, False)
    _, lse, denom = fwd(logits, target, 255, True, False)
    bwd = torch.ops.semask_kernels.upsample_cross_entropy_backward
    with pytest.raises(RuntimeError, match="lse"):
        bwd(torch.ones((), device="cuda"), logits, target, lse[:, :-1], denom, 255, False)
    with pytest.raises(RuntimeError, match="grad"):
        bwd(torch.ones(2, device="cuda"), logits, target, lse, denom, 255, False)
    with pytest.raises(RuntimeError, match="denominator"):
        bwd(torch.ones((), device="cuda"), logits, target, lse, denom.double(), 255, False)
