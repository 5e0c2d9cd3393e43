"""A Triton GEMM ``x @ weightᵀ + bias`` with the Swin block's pointwise work as its epilogue (``linear_gelu``,
``linear_residual``).

x (M, K) and weight (N, K) with any strides, bias (N,) or none; each program owns a (BLOCK_M, BLOCK_N) tile of
the output, accumulates in float32 over K (tensor cores for float16/bfloat16, IEEE float32 for float32) and
applies one epilogue to the tile while it is in registers:

- ``GELU``: gelu(h), the exact erf GELU timm's Mlp uses (``nn.GELU()``, approximate="none").
- ``GELU_GRAD``: aux · gelu'(h), the gradient of the pre-activation from the incoming gradient ``aux`` (M, N):
  the backward recomputes h from x and the weight instead of saving it (see ``linear_gelu``'s op docstring for
  the byte count).
- ``RESIDUAL``: aux + scale[row // rows_per_sample] · h, the residual stream plus a branch scaled per sample
  (drop path in training; no scale: 1).

The result is written once in the output dtype; nothing of the (M, N) pre-activation reaches memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .. import _triton_utils as tu

tl = tu.language()

GELU, GELU_GRAD, RESIDUAL = 0, 1, 2
EPILOGUES = {"gelu": GELU, "gelu_grad": GELU_GRAD, "residual": RESIDUAL}


@tu.jit
def _gelu_parts(h):
    """(Φ(h), φ(h)): the standard normal's distribution and density at h (float32)."""
    cdf = 0.5 * (1.0 + tl.math.erf(h * 0.7071067811865476))
    pdf = tl.exp(-0.5 * h * h) * 0.3989422804014327
    return cdf, pdf


@tu.jit
def _linear_epilogue_kernel(X, W, B, AUX, SCALE, OUT, M, N, K, rows_per_sample,
                            sxm, sxk, swn, swk, sam, san, som, son,
                            HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, EPILOGUE: tl.constexpr,
                            DOT_DT: tl.constexpr, PREC: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    m_ok = rm < M
    n_ok = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + rk) < K
        a = tl.load(X + rm[:, None] * sxm + (k0 + rk)[None, :] * sxk, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(W + rn[None, :] * swn + (k0 + rk)[:, None] * swk, mask=n_ok[None, :] & k_ok[:, None], other=0.0)
        acc += tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(B + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    ok = m_ok[:, None] & n_ok[None, :]
    if EPILOGUE == 0:  # GELU
        cdf, pdf = _gelu_parts(acc)
        out = acc * cdf
    else:
        aux = tl.load(AUX + rm[:, None] * sam + rn[None, :] * san, mask=ok, other=0.0).to(tl.float32)
        if EPILOGUE == 1:  # GELU_GRAD
            cdf, pdf = _gelu_parts(acc)
            out = aux * (cdf + acc * pdf)
        else:  # RESIDUAL
            if HAS_SCALE:
                s = tl.load(SCALE + rm // rows_per_sample, mask=m_ok, other=0.0).to(tl.float32)
                acc = acc * s[:, None]
            out = aux + acc
    tl.store(OUT + rm[:, None] * som + rn[None, :] * son, out.to(OUT.dtype.element_ty), mask=ok)


@dataclass(frozen=True)
class Config:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


def config(m: int, n: int, k: int, dtype: torch.dtype) -> Config:
    """Tiles for an (M, N, K) problem: 64x64 output tiles over K in 32s (float32: 32-wide K, fewer registers);
    smaller tiles for small problems (and for the interpreter, where every element is a Python-level op)."""
    def rule() -> Config:
        bm = min(64, tu.next_pow2(m, 16))
        bn = min(64 if dtype != torch.float32 else 64, tu.next_pow2(n, 16))
        bk = min(32, tu.next_pow2(k, 16))
        warps = 4 if bm * bn >= 64 * 64 else 2
        return Config(bm, bn, bk, warps, 3 if dtype != torch.float32 else 2)
    return tu.cached_config(("linear_epilogue", tu.next_pow2(m, 16), tu.next_pow2(n, 16), tu.next_pow2(k, 16),
                             dtype), rule)


def check(x: Tensor) -> Optional[str]:
    """Why the Triton GEMM cannot run x here (device, dtype), or None. The ops' ``arguments()`` hold every other
    tensor to x's device and dtype, so x speaks for all of them (one check: this runs on every call of ``auto``)."""
    from ..backends import reasons
    return reasons(tu.triton_available(), tu.device_ok(x, "x"), tu.dtype_ok(x, "x"))


def linear_epilogue(x: Tensor, weight: Tensor, bias: Optional[Tensor], epilogue: str, out: Tensor,
                    aux: Optional[Tensor] = None, scale: Optional[Tensor] = None, rows_per_sample: int = 1) -> Tensor:
    """``out`` (M, N) = epilogue(x (M, K) @ weight (N, K)ᵀ + bias) with the ``aux`` (M, N) / ``scale`` the
    epilogue reads (module docstring). Any strides; ``out`` is written, never read."""
    m, k = x.shape
    n = weight.shape[0]
    if m == 0 or n == 0:
        return out
    kind = EPILOGUES[epilogue]
    if kind != GELU and aux is None:
        raise ValueError(f"the {epilogue} epilogue reads aux (M, N); got none")
    cfg = config(m, n, k, x.dtype)
    aux_ = aux if aux is not None else out
    grid = (-(-m // cfg.block_m), -(-n // cfg.block_n))
    with tu.device_guard(x):
        _linear_epilogue_kernel[grid](
            x, weight, bias if bias is not None else x, aux_, scale if scale is not None else x, out,
            m, n, k, max(1, int(rows_per_sample)),
            x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), aux_.stride(0), aux_.stride(1),
            out.stride(0), out.stride(1),
            HAS_BIAS=bias is not None, HAS_SCALE=scale is not None, EPILOGUE=kind,
            DOT_DT=tu.dot_dtype(x.dtype), PREC=tu.dot_precision(x.dtype),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out
