"""``window_attention``'s spec: backends, dtypes, sample inputs, FLOPs and the awkward test cases."""
from __future__ import annotations

import torch

from .._flops import attention_flops
from .._spec import ALL_FLOATS, FP32, LOW, Call, Case, OpSpec, Size
from .._windows import shift_mask


def inputs(b_: int, heads: int, window, d: int, dv=None, n_mask: int = 0, table: bool = True,
           dtype=torch.float32, device="cpu") -> Call:
    """q, k, v (B_, nH, N, d|dv), a bias table (scaled 0.5) and a realistic shift mask plus noise over
    ``n_mask`` windows (so every window index matters)."""
    n = window[0] * window[1]
    q, k = (torch.randn(b_, heads, n, d, device=device).to(dtype) for _ in range(2))
    v = torch.randn(b_, heads, n, dv or d, device=device).to(dtype)
    bias = (0.5 * torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, device=device)).to(dtype) \
        if table else None
    mask = None
    if n_mask:
        mask = shift_mask(window[0] * n_mask, window[1], window, (window[0] // 2, 0), -100.0, device=device)
        mask = (mask + torch.randn_like(mask)).to(dtype)
    grads = ("q", "k", "v") + (("bias_table",) if table else ())
    return Call({"q": q, "k": k, "v": v, "bias_table": bias, "window_size": tuple(window), "mask": mask,
                 "scale": d ** -0.5}, grads)


def sample(size: Size, dtype, device) -> Call:
    """The windows of one Swin stage: B·(H/M)·(W/M) windows of M² tokens, nH heads of C/nH."""
    windows = size.batch * -(-size.height // size.window) * -(-size.width // size.window)
    w = (size.window, size.window)
    return inputs(windows, size.heads, w, size.channels // size.heads, n_mask=0, dtype=dtype, device=device)


def flops(q_shape, k_shape, v_shape, *args) -> int:
    b_, heads, n, d = q_shape
    return attention_flops(b_, heads, n, k_shape[2], d, v_shape[-1])


def _minus_inf_mask() -> Call:
    """A user mask may hold -inf (not a whole row): those keys get probability 0, no NaN appears."""
    call = inputs(4, 2, (3, 4), 16, n_mask=2)
    mask = call.kwargs["mask"]
    mask[:, :, 5:9] = float("-inf")
    mask[0, 3, :] = float("-inf")
    mask[0, 3, 0] = 0.0  # a row with a single key left
    return call


def _timm_views() -> Call:
    """q, k, v as timm makes them: permuted views of one qkv tensor; a strided mask."""
    b_, n, heads, d = 4, 12, 2, 16
    q, k, v = torch.randn(b_, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    return Call({"q": q, "k": k, "v": v, "bias_table": 0.5 * torch.randn(5 * 7, heads), "window_size": (3, 4),
                 "mask": torch.randn(8, 12, 12)[::4], "scale": 0.3}, ("q", "k", "v", "bias_table"))


CASES = (
    Case("7x7-d32-mask", lambda: inputs(4, 2, (7, 7), 32, n_mask=2), dtypes=FP32 + LOW),
    Case("7x7-d16-nomask", lambda: inputs(4, 2, (7, 7), 16)),
    Case("7x7-notable", lambda: inputs(3, 1, (7, 7), 16, n_mask=3, table=False)),
    Case("3x5-dv24", lambda: inputs(6, 2, (3, 5), 16, 24, n_mask=3), note="non-square window, dv != d"),
    Case("4x6-d20-dv8", lambda: inputs(2, 3, (4, 6), 20, 8, n_mask=1), note="head dims not powers of two"),
    Case("1x1", lambda: inputs(5, 1, (1, 1), 16), note="N = 1"),
    Case("d64", lambda: inputs(2, 1, (7, 7), 64, n_mask=2)),
    Case("d128", lambda: inputs(2, 1, (7, 7), 128, n_mask=2)),
    Case("12x12", lambda: inputs(1, 1, (12, 12), 16, n_mask=1), note="N = 144: key-block tails, the dQ kernel"),
    Case("14x14", lambda: inputs(1, 1, (14, 14), 16), note="N = 196"),
    Case("timm-views", _timm_views, note="non-contiguous q, k, v, strided mask"),
    Case("minus-inf-mask", _minus_inf_mask, note="-inf in the mask, one row with one key"),
)

SPEC = OpSpec(
    name="window_attention",
    preference=("cuda", "triton", "torch", "reference"),
    dtypes={"reference": ALL_FLOATS, "torch": ALL_FLOATS, "triton": FP32 + LOW},
    sample=sample,
    flops=flops,
    cases=CASES,
    magnitude_scaled=("d bias_table",),  # sums over tokens; q, k, v and the output are unit scale
    summary="attention inside already-partitioned windows (timm WindowAttention's inner math)",
)
