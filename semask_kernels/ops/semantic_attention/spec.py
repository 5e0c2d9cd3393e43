"""``semantic_attention``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import attention_flops, window_count
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size


def inputs(b: int, h: int, w: int, k: int, c: int, window, pads: bool, scale: float = 1.0, dtype=torch.float32,
           device="cpu") -> Call:
    """s, k (B, H, W, K) and v (B, H, W, C) on unit scale (``scale`` multiplies s), pads (K,), (C,) if ``pads``."""
    s = (torch.randn(b, h, w, k, device=device) * scale).to(dtype)
    kk = torch.randn(b, h, w, k, device=device).to(dtype)
    v = torch.randn(b, h, w, c, device=device).to(dtype)
    pk = torch.randn(k, device=device).to(dtype) if pads else None
    pv = torch.randn(c, device=device).to(dtype) if pads else None
    return Call({"s": s, "k": kk, "v": v, "window_size": window, "pad_k": pk, "pad_v": pv},
                ("s", "k", "v") + (("pad_k", "pad_v") if pads else ()))


def sample(size: Size, dtype, device) -> Call:
    """SeMask's semantic attention at ``size``: K = ``size.classes``, windowed unless ``global_semantic``."""
    window = None if size.global_semantic else size.window
    return inputs(size.batch, size.height, size.width, size.classes, size.channels, window, False, dtype=dtype,
                  device=device)


def flops(s_shape, k_shape, v_shape, window_size, *args) -> int:
    b, h, w, k = s_shape
    c = v_shape[-1]
    if not window_size:
        return attention_flops(b, 1, h * w, h * w, k, c)
    wh, ww = window_size
    return attention_flops(window_count(b, h, w, window_size), 1, wh * ww, wh * ww, k, c)


def _non_contiguous() -> Call:
    """Strided s (last-dim stride 2), channels-first k, H/W-swapped v, strided pads."""
    call = inputs(2, 9, 10, 19, 40, 7, True)
    s, k, v, pk, pv = (call.kwargs[n] for n in ("s", "k", "v", "pad_k", "pad_v"))
    wide = torch.randn(2, 9, 10, 2 * 19)
    wide[..., 1::2] = s
    return call.with_(s=wide[..., 1::2], k=k.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1),
                      v=v.transpose(1, 2).contiguous().transpose(1, 2), pad_k=torch.stack([pk, pk], 1)[:, 0],
                      pad_v=torch.stack([pv, pv], 1)[:, 1])


CASES = (
    Case("win7-pad-both-axes-K19", lambda: inputs(2, 9, 10, 19, 40, 7, True), dtypes=FP32 + LOW),
    Case("win(4,6)-K150-C-tiles", lambda: inputs(1, 9, 10, 150, 200, (4, 6), True), dtypes=FP32 + LOW),
    Case("win7-map-smaller-zero-pads", lambda: inputs(1, 3, 5, 19, 24, 7, False)),
    Case("win7-map-smaller-pads", lambda: inputs(2, 3, 5, 19, 24, (7, 7), True)),
    Case("win12-several-key-blocks", lambda: inputs(1, 13, 14, 19, 24, 12, True)),
    Case("win4-no-padding", lambda: inputs(1, 8, 8, 19, 24, 4, True)),
    Case("global-N77-K19", lambda: inputs(2, 7, 11, 19, 40, None, False), dtypes=FP32 + LOW),
    Case("global-N90-K150-C-tiles", lambda: inputs(1, 9, 10, 150, 200, None, False), dtypes=FP32 + LOW),
    Case("non-contiguous", _non_contiguous, note="every input strided differently"),
)

SPEC = OpSpec(
    name="semantic_attention",
    preference=("cuda", "triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    summary="SeMask's semantic attention: one head, no scaling, softmax(s·kᵀ)·v",
)
