"""FLOP helpers shared by the ops' specs (and so by ``flop_counter`` and the benchmarks, which read the specs)."""
from __future__ import annotations


def attention_flops(windows: int, heads: int, n_q: int, n_k: int, d_qk: int, d_v: int) -> int:
    """FLOPs of softmax(q kᵀ) v counted as its two matmuls (2 per multiply-add), as flop_counter counts SDPA."""
    return 2 * windows * heads * n_q * n_k * (d_qk + d_v)


def window_count(batch: int, height: int, width: int, window) -> int:
    """Windows of a (batch, height, width) map padded at the bottom/right to multiples of ``window`` (Wh, Ww)."""
    wh, ww = window
    return batch * -(-height // wh) * -(-width // ww)


# A bilinear tap is a multiply and an add: 7 FLOPs per resized element (4 products, 3 sums).
BILINEAR_FLOPS = 7


def linear_flops(x_shape, w_shape, *args) -> int:
    """2·M·N·K of ``x @ weightᵀ`` with x (..., K) and weight (N, K): a Linear's multiply-adds (spec signature)."""
    rows = 1
    for s in x_shape[:-1]:
        rows *= s
    return 2 * rows * w_shape[0] * w_shape[1]
