"""The fused Triton upsample_cross_entropy against the reference (run in float32): loss and d logits.

On the CPU the kernels run under the Triton interpreter (tests/conftest.py): small maps, awkward ratios
(non-integer upsampling, a target smaller than the logits, 1×1 logits or target, equal sizes), K = 19 and 150,
ignored pixels, all pixels ignored, both reductions, both align_corners. Tests marked ``gpu`` run SeMask-T
sizes on CUDA.
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.upsample_cross_entropy import triton as uce_triton
from tests.ops import loss_cases
from tests.ops.loss_cases import make, run, unit
from tests.utils import assert_close, assert_error_within

OP = "upsample_cross_entropy"


def check_fp32(logits, target, **kw):
    return loss_cases.check_fp32("triton", logits, target, **kw)


# (B, K, h, w), target (H, W)
CASES = {
    "up-non-integer-K19": ((2, 19, 4, 6), (15, 21)),
    "up-x4-K150": ((1, 150, 3, 4), (12, 16)),
    "target-smaller": ((1, 19, 8, 8), (3, 5)),
    "same-size": ((2, 5, 4, 6), (4, 6)),
    "1x1-logits": ((2, 4, 1, 1), (5, 7)),
    "1x1-target": ((2, 3, 5, 4), (1, 1)),
}


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("case", ["up-non-integer-K19", "target-smaller"])
def test_fp32_both_reductions_both_align_corners(case, avg_non_ignore, align_corners):
    shape, out = CASES[case]
    check_fp32(*make(*shape, out), avg_non_ignore=avg_non_ignore, align_corners=align_corners)


@pytest.mark.parametrize("case", ["up-x4-K150", "same-size", "1x1-logits", "1x1-target"])
def test_fp32_shapes(case):
    shape, out = CASES[case]
    check_fp32(*make(*shape, out), align_corners=case == "1x1-logits")


@pytest.mark.parametrize("avg_non_ignore", [True, False])
def test_all_ignored_gives_zero(avg_non_ignore):
    logits, target = make(1, 5, 4, 6, (9, 11))
    target.fill_(255)
    loss, grad = run("triton", logits, target, avg_non_ignore=avg_non_ignore)
    assert float(loss.detach()) == 0.0 and float(grad.abs().sum()) == 0.0


def test_custom_ignore_index_int32_target():
    logits, target = make(2, 7, 4, 6, (9, 11), ignore_frac=0.0)
    target[:, :3] = -100
    check_fp32(logits, target.int(), ignore_index=-100)


def test_large_logits():
    logits, target = make(1, 19, 4, 6, (9, 11))
    logits = logits * 40
    exact = run("reference", logits.double(), target)
    got, ref = unit(run("triton", logits, target), exact), unit(run("reference", logits, target), exact)
    for name, a, r, e in zip(("loss", "d logits"), got, ref, unit(exact, exact)):
        assert torch.isfinite(a).all()
        assert_error_within(a, r, e, 3.0, name=name)


@pytest.mark.parametrize("dtype,case", [(torch.bfloat16, "up-non-integer-K19"), (torch.bfloat16, "up-x4-K150"),
                                        (torch.float16, "target-smaller")], ids=str)
def test_low_precision_error_within_reference_error(dtype, case):
    shape, out = CASES[case]
    logits, target = make(*shape, out)
    logits = logits.to(dtype).float()
    exact = run("reference", logits, target)
    got = run("triton", logits, target, dtype)
    ref = run("reference", logits, target, dtype)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    for i, (name, a, r, e) in enumerate(zip(("loss", "d logits"), unit(got, exact), unit(ref, exact),
                                            unit(exact, exact))):
        assert_error_within(a.to(dtype), r.to(dtype), e, 2.0 if i == 0 else 3.0, name=name)


def test_non_contiguous_inputs_give_the_same_bits():
    logits, target = make(1, 19, 4, 6, (15, 21))
    logits_cl = logits.to(memory_format=torch.channels_last)
    target_t = target.transpose(1, 2).contiguous().transpose(1, 2)
    assert not logits_cl.is_contiguous() and not target_t.is_contiguous()
    for a, e in zip(run("triton", logits_cl, target_t), run("triton", logits, target)):
        assert torch.equal(a, e)


def test_backward_is_deterministic():
    logits, target = make(1, 150, 3, 4, (12, 16))
    first = run("triton", logits, target, avg_non_ignore=False)
    second = run("triton", logits, target, avg_non_ignore=False)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_opcheck_triton():
    logits, target = make(1, 5, 3, 4, (7, 9))
    torch.library.opcheck(torch.ops.semask_kernels.upsample_cross_entropy,
                          (logits.requires_grad_(), target, 255, False, False, "triton"))


def test_dispatch_on_cpu():
    logits, target = make(1, 5, 3, 4, (7, 9))
    args = (logits, target, 255, True, False)
    assert backends.why_not(OP, "triton", *args) is None  # runs under the interpreter, by name
    assert backends.choose_backend(OP, "auto", *args) == "torch"  # auto never picks the interpreter


def test_declines_float64():
    logits, target = make(1, 5, 3, 4, (7, 9))
    logits = logits.double()
    assert "float64" in uce_triton.supports(logits, target, 255, True, False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run.*float64"):
        sk.upsample_cross_entropy(logits, target, backend="triton")


def test_bad_label_still_named():
    logits, target = make(1, 5, 3, 4, (7, 9))
    target[0, 0, 0] = 9
    with pytest.raises(ValueError, match="label 9"):
        sk.upsample_cross_entropy(logits, target, backend="triton")


# ---------------------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_semask_t_512(dtype, avg_non_ignore, align_corners):
    """SeMask-T decode-head logits at 128² against 512² ADE20K-like labels (K = 150, 255 ignored)."""
    logits, target = make(2, 150, 128, 128, (512, 512), device="cuda")
    logits = logits.to(dtype).float()
    kw = dict(avg_non_ignore=avg_non_ignore, align_corners=align_corners)
    exact = run("reference", logits, target, **kw)
    got = run("triton", logits, target, dtype, **kw)
    if dtype == torch.float32:
        for name, a, e in zip(("loss", "d logits"), unit(got, exact), unit(exact, exact)):
            assert_close(a, e, name=name)
    else:
        ref = run("reference", logits, target, dtype, **kw)
        for i, (name, a, r, e) in enumerate(zip(("loss", "d logits"), unit(got, exact), unit(ref, exact),
                                                unit(exact, exact))):
            assert_error_within(a.to(dtype), r.to(dtype), e, 2.0 if i == 0 else 3.0, name=name)
    again = run("triton", logits, target, dtype, **kw)
    assert torch.equal(got[0], again[0]) and torch.equal(got[1], again[1])
