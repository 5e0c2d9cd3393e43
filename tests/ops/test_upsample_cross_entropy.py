"""upsample_cross_entropy: the reference against F.interpolate + F.cross_entropy, both reductions; and what every
fused backend must do beyond the conformance suite (exact zeros when all is ignored, large logits, layouts)."""
import pytest
import torch
import torch.nn.functional as F

import semask_kernels as sk
from semask_kernels.ops.upsample_cross_entropy.spec import SPEC, inputs
from tests.ops import conformance
from tests.ops.loss_cases import run, unit
from tests.utils import assert_close, assert_error_within


def _data(b=2, k=5, h=4, w=6, out=(15, 21), ignore_frac=0.2, dtype=torch.float32):
    logits = torch.randn(b, k, h, w, dtype=dtype, requires_grad=True)
    target = torch.randint(0, k, (b, *out))
    target[torch.rand(target.shape) < ignore_frac] = 255
    return logits, target


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("out", [(15, 21), (4, 6), (1, 1), (3, 2)])
def test_matches_interpolate_then_cross_entropy(align_corners, avg_non_ignore, out):
    logits, target = _data(out=out)
    full = F.interpolate(logits, size=out, mode="bilinear", align_corners=align_corners)
    if avg_non_ignore:  # torch's own mean over non-ignored pixels
        expected = F.cross_entropy(full, target, ignore_index=255)
    else:  # mmseg 0.11: reduction 'none', then mean over all pixels
        expected = F.cross_entropy(full, target, ignore_index=255, reduction="none").mean()
    got = sk.upsample_cross_entropy(logits, target, avg_non_ignore=avg_non_ignore, align_corners=align_corners,
                                    backend="reference")
    assert_close(got, expected, name="loss")
    assert_close(torch.autograd.grad(got, logits)[0], torch.autograd.grad(expected, logits)[0], name="grad")


def test_all_ignored_gives_zero_not_nan():
    logits, target = _data()
    target.fill_(255)
    loss = sk.upsample_cross_entropy(logits, target)
    assert float(loss) == 0.0
    loss.backward()
    assert float(logits.grad.abs().sum()) == 0.0


def test_custom_ignore_index_and_int32_target():
    logits, target = _data(ignore_frac=0)
    target[:, :3] = -100
    expected = F.cross_entropy(F.interpolate(logits, size=target.shape[1:], mode="bilinear"), target,
                               ignore_index=-100)
    assert_close(sk.upsample_cross_entropy(logits, target.int(), ignore_index=-100), expected)


def test_gradcheck():
    logits, target = _data(dtype=torch.float64, out=(7, 9))
    for avg in (True, False):
        assert torch.autograd.gradcheck(
            lambda x: sk.upsample_cross_entropy(x, target, avg_non_ignore=avg, backend="reference"), (logits,))


def test_opcheck():
    logits, target = _data()
    torch.library.opcheck(torch.ops.semask_kernels.upsample_cross_entropy,
                          (logits, target, 255, False, False, "reference"))


def test_compile_fullgraph_matches_eager():
    logits, target = _data()
    logits = logits.detach()

    def fn(logits, target):
        return sk.upsample_cross_entropy(logits, target, avg_non_ignore=False)

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(logits, target), fn(logits, target))


def test_bad_label_is_caught_under_compile_too():
    logits, target = _data()
    target[0, 0, 0] = 7
    compiled = torch.compile(lambda x, t: sk.upsample_cross_entropy(x, t), fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match="label 7"):
        compiled(logits.detach(), target)


BAD = [
    (dict(target=torch.full((2, 15, 21), 5)), ValueError, r"label 5, outside \[0, 5\)"),
    (dict(target=torch.full((2, 15, 21), -1)), ValueError, r"label -1, outside"),
    (dict(target=torch.zeros(2, 15, 21)), TypeError, "target must have an integer dtype"),
    (dict(target=torch.zeros(3, 15, 21, dtype=torch.long)), ValueError, "target must have the batch size"),
    (dict(target=torch.zeros(2, 15, dtype=torch.long)), ValueError, "target must have 3 dimensions"),
    (dict(logits=torch.randn(2, 5, 4)), ValueError, "logits must have 4 dimensions"),
    (dict(ignore_index=2.5), TypeError, "ignore_index must be an int"),
    (dict(ignore_index=2 ** 63), ValueError, "ignore_index must fit in int64"),
    (dict(ignore_index=-2 ** 64), ValueError, "ignore_index must fit in int64"),
    (dict(avg_non_ignore="yes"), TypeError, "avg_non_ignore must be a bool"),
    (dict(backend="triton_fast"), ValueError, "backend must be one of"),
]


@pytest.mark.parametrize("override,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(override, exc, match):
    kw = dict(logits=torch.randn(2, 5, 4, 6), target=torch.zeros(2, 15, 21, dtype=torch.long))
    kw.update(override)
    with pytest.raises(exc, match=match):
        sk.upsample_cross_entropy(kw.pop("logits"), kw.pop("target"), **kw)


# ---- every fused backend (the CUDA one on a GPU): exact zeros, large logits, memory layouts -------------------

FUSED = conformance.fused(SPEC)


@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("backend", FUSED)
def test_fused_all_ignored_gives_exactly_zero(backend, avg_non_ignore):
    call = inputs(1, 5, 4, 6, (9, 11)).to(device=conformance.device(backend))
    call.kwargs["target"].fill_(255)
    loss, grad = run(backend, call.kwargs["logits"], call.kwargs["target"], avg_non_ignore=avg_non_ignore)
    assert float(loss.detach()) == 0.0 and float(grad.abs().sum()) == 0.0


@pytest.mark.parametrize("backend", FUSED)
def test_fused_large_logits_stay_finite_and_accurate(backend):
    call = inputs(1, 19, 4, 6, (9, 11)).to(device=conformance.device(backend))
    logits, target = call.kwargs["logits"] * 40, call.kwargs["target"]
    exact = run("reference", logits.double(), target)
    got, ref = unit(run(backend, logits, target), exact), unit(run("reference", logits, target), exact)
    for name, a, r, e in zip(("loss", "d logits"), got, ref, unit(exact, exact)):
        assert torch.isfinite(a).all()
        assert_error_within(a, r, e, 3.0, name=name)


@pytest.mark.parametrize("backend", FUSED)
def test_fused_channels_last_logits_and_strided_target_give_the_same_bits(backend):
    call = inputs(2, 19, 4, 6, (15, 21)).to(device=conformance.device(backend))
    logits, target = call.kwargs["logits"], call.kwargs["target"]
    logits_cl = logits.to(memory_format=torch.channels_last)
    target_t = target.transpose(1, 2).contiguous().transpose(1, 2)
    assert not logits_cl.is_contiguous() and not target_t.is_contiguous()
    for a, e in zip(run(backend, logits_cl, target_t), run(backend, logits, target)):
        assert torch.equal(a, e)
