"""upsample_cross_entropy, CUDA backend: loss and d logits against the reference (GPU), never allocating the
(B, K, H, W) logits (GPU), and the C++ schemas, argument errors and capability reasons (CPU)."""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from tests.ops.cuda_marks import gpu_test, needs_ext
from semask_kernels.ops.upsample_cross_entropy import cuda
from tests.ops import loss_cases
from tests.ops.loss_cases import run, unit
from tests.utils import assert_close, assert_error_within

OP = "upsample_cross_entropy"


def make(*args, device="cuda", seed=0, **kw):
    return loss_cases.make(*args, device=device, seed=seed, **kw)


def check_fp32(logits, target, **kw):
    return loss_cases.check_fp32("cuda", logits, target, **kw)


# (B, K, h, w), target (H, W)
CASES = {
    "up-non-integer-K19": ((2, 19, 4, 6), (15, 21)),
    "up-x4-K150": ((2, 150, 16, 12), (64, 48)),
    "up-x8": ((1, 7, 5, 3), (40, 24)),
    "target-smaller": ((1, 19, 8, 8), (3, 5)),
    "target-much-smaller": ((2, 5, 37, 29), (4, 3)),
    "same-size": ((2, 5, 4, 6), (4, 6)),
    "1x1-logits": ((2, 4, 1, 1), (5, 7)),
    "1x1-target": ((2, 3, 5, 4), (1, 1)),
    "one-row": ((1, 6, 1, 9), (1, 31)),
}


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
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_fp32(case, avg_non_ignore, align_corners):
    shape, out = CASES[case]
    check_fp32(*make(*shape, out), avg_non_ignore=avg_non_ignore, align_corners=align_corners)


@gpu_test
@pytest.mark.parametrize("avg_non_ignore", [True, False])
def test_all_ignored_gives_zero(avg_non_ignore):
    logits, target = make(1, 5, 4, 6, (9, 11))
    target.fill_(255)
    loss, grad = run("cuda", logits, target, avg_non_ignore=avg_non_ignore)
    assert float(loss.detach()) == 0.0 and float(grad.abs().sum()) == 0.0


@gpu_test
@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16], ids=str)
def test_label_dtypes_and_custom_ignore_index(dtype):
    logits, target = make(2, 7, 4, 6, (9, 11), ignore_frac=0.0)
    ignore = 200 if dtype == torch.uint8 else -100
    target[:, :3] = ignore
    check_fp32(logits, target.to(dtype), ignore_index=ignore)


@gpu_test
def test_large_logits_stay_finite_and_accurate():
    logits, target = make(1, 19, 4, 6, (9, 11))
    logits = logits * 40
    exact = run("reference", logits.double(), target)
    got, ref = unit(run("cuda", logits, target), exact), unit(run("reference", logits, target), exact)
    for name, a, r, e in zip(("loss", "d logits"), got, ref, unit(exact, exact)):
        assert torch.isfinite(a).all()
        assert_error_within(a, r, e, 3.0, name=name)


@gpu_test
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", ["up-non-integer-K19", "up-x4-K150", "target-smaller"])
def test_low_precision_error_within_reference_error(dtype, case):
    shape, out = CASES[case]
    logits, target = make(*shape, out)
    logits = logits.to(dtype).float()
    exact = run("reference", logits, target)
    got = run("cuda", logits, target, dtype)
    ref = run("reference", logits, target, dtype)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    for i, (name, a, r, e) in enumerate(zip(("loss", "d logits"), unit(got, exact), unit(ref, exact),
                                            unit(exact, exact))):
        assert_error_within(a.to(dtype), r.to(dtype), e, 2.0 if i == 0 else 3.0, name=name)


@gpu_test
def test_non_contiguous_inputs_give_the_same_bits():
    logits, target = make(2, 19, 4, 6, (15, 21))
    logits_cl = logits.to(memory_format=torch.channels_last)
    target_t = target.transpose(1, 2).contiguous().transpose(1, 2)
    assert not logits_cl.is_contiguous() and not target_t.is_contiguous()
    for a, e in zip(run("cuda", logits_cl, target_t), run("cuda", logits, target)):
        assert torch.equal(a, e)


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
