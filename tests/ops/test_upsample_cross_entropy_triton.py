"""The fused Triton upsample_cross_entropy: what is specific to it (determinism at K = 150, dispatch, limits, the
label check, SeMask-T sizes on a GPU).

Loss and d logits against the reference on the spec's awkward ratios (non-integer upsampling, a target smaller than
the logits, 1×1 logits or target, equal sizes), K = 19 and 150, ignored pixels, both reductions, both
align_corners are in test_conformance.py; all-ignored, large logits and layouts, for every fused backend, in
test_upsample_cross_entropy.py. On the CPU the kernels run under the Triton interpreter (tests/conftest.py).
"""
from __future__ import annotations

import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.upsample_cross_entropy import triton as uce_triton
from tests.ops.loss_cases import make, run, unit
from tests.utils import assert_close, assert_error_within

OP = "upsample_cross_entropy"


def test_backward_is_deterministic():
    logits, target = make(1, 150, 3, 4, (12, 16))
    first = run("triton", logits, target, avg_non_ignore=False)
    second = run("triton", logits, target, avg_non_ignore=False)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_dispatch_on_cpu():
    logits, target = make(1, 5, 3, 4, (7, 9))
    args = (logits, target, 255, True, False)
    assert backends.why_not(OP, "triton", *args) is None  # runs under the interpreter, by name
    assert backends.choose_backend(OP, "auto", *args) == "torch"  # auto never picks the interpreter


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
