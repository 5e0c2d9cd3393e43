"""``upsample_cross_entropy``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import BILINEAR_FLOPS
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size

# (B, K, h, w) logits, (H, W) target: non-integer upsampling, x4, x8, a target smaller than the logits, equal
# sizes, 1x1 logits or target, one row.
SHAPES = {
    "up-non-integer-K19": ((2, 19, 4, 6), (15, 21)),
    "up-x4-K150": ((1, 150, 3, 4), (12, 16)),
    "up-x8": ((1, 7, 5, 3), (40, 24)),
    "target-smaller": ((1, 19, 8, 8), (3, 5)),
    "target-much-smaller": ((2, 5, 37, 29), (4, 3)),
    "same-size": ((2, 5, 4, 6), (4, 6)),
    "1x1-logits": ((2, 4, 1, 1), (5, 7)),
    "1x1-target": ((2, 3, 5, 4), (1, 1)),
    "one-row": ((1, 6, 1, 9), (1, 31)),
}


def inputs(b: int, k: int, h: int, w: int, out, ignore_frac: float = 0.2, dtype=torch.float32, device="cpu",
           **options) -> Call:
    """Logits (B, K, h, w) of spread 2 and a target (B, *out) with ~``ignore_frac`` pixels at 255."""
    logits = (torch.randn(b, k, h, w, device=device) * 2).to(dtype)
    target = torch.randint(0, k, (b, *out), device=device)
    target[torch.rand(target.shape, device=device) < ignore_frac] = 255
    return Call({"logits": logits, "target": target, **options}, ("logits",))


def sample(size: Size, dtype, device) -> Call:
    """Decode-head logits at the 1/4-scale map against labels at full resolution (4x), K = ``size.classes``."""
    return inputs(size.batch, size.classes, size.height, size.width, (4 * size.height, 4 * size.width),
                  dtype=dtype, device=device)


def flops(logits_shape, target_shape, *args) -> int:
    """Per full-resolution pixel and class: 7 FLOPs of bilinear interpolation and 3 of the log-sum-exp (subtract
    the max, exp, add). The backward does the same amount of work in the other direction."""
    return (BILINEAR_FLOPS + 3) * logits_shape[0] * logits_shape[1] * target_shape[-2] * target_shape[-1]


def _all_ignored() -> Call:
    call = inputs(1, 5, 4, 6, (9, 11), avg_non_ignore=False)
    call.kwargs["target"].fill_(255)
    return call


def _custom_ignore_int32() -> Call:
    call = inputs(2, 7, 4, 6, (9, 11), ignore_frac=0.0, ignore_index=-100)
    target = call.kwargs["target"]
    target[:, :3] = -100
    return call.with_(target=target.int())


def _non_contiguous() -> Call:
    call = inputs(1, 19, 4, 6, (15, 21))
    return call.with_(logits=call.kwargs["logits"].to(memory_format=torch.channels_last),
                      target=call.kwargs["target"].transpose(1, 2).contiguous().transpose(1, 2))


def _cases():
    for name in ("up-non-integer-K19", "target-smaller"):
        for avg in (True, False):
            for align in (False, True):
                yield Case(f"{name}-avg{int(avg)}-align{int(align)}",
                           lambda s=SHAPES[name], a=avg, c=align: inputs(*s[0], s[1], avg_non_ignore=a,
                                                                          align_corners=c),
                           dtypes=FP32 + LOW if (avg, align) == (True, False) else FP32)
    for name in ("up-x4-K150", "up-x8", "target-much-smaller", "same-size", "1x1-logits", "1x1-target", "one-row"):
        yield Case(name, lambda s=SHAPES[name], n=name: inputs(*s[0], s[1], align_corners=n == "1x1-logits"),
                   dtypes=FP32 + LOW if name == "up-x4-K150" else FP32)
        for avg in (True, False):  # the other reductions and align_corners: on the GPU only (the interpreter is slow)
            for align in (False, True):
                if (avg, align) != (True, name == "1x1-logits"):
                    yield Case(f"{name}-avg{int(avg)}-align{int(align)}",
                               lambda s=SHAPES[name], a=avg, c=align: inputs(*s[0], s[1], avg_non_ignore=a,
                                                                              align_corners=c),
                               backends=("cuda",))
    yield Case("up-x4-K150-16x12", lambda: inputs(2, 150, 16, 12, (64, 48)), backends=("cuda",),
               note="a larger x4 upsampling, several class chunks")
    yield Case("all-ignored", _all_ignored, note="every pixel ignored: loss and gradient 0")
    yield Case("ignore-index-int32", _custom_ignore_int32, note="ignore_index=-100, int32 labels")
    yield Case("non-contiguous", _non_contiguous, note="channels-last logits, transposed target")


SPEC = OpSpec(
    name="upsample_cross_entropy",
    preference=("cuda", "triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW, "cuda": FP32 + LOW},
    sample=sample,
    flops=flops,
    backward_flops=flops,
    cases=tuple(_cases()),
    unit_scale=True,
    summary="bilinear resize of logits to the labels' size, then cross-entropy, never forming the resized logits",
)
