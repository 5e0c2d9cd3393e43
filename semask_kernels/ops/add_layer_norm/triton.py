"""Triton backend of ``add_layer_norm``: one pass over each row block writes s = x + residual and its LayerNorm y
(the statistics in float32 from s as stored, so y is the LayerNorm of the s the next op reads); the backward
recomputes s and the statistics from x and residual (nothing but the inputs is saved) and writes dx = dresidual
= ds + LayerNorm's input gradient, with per-block partial sums for dweight/dbias reduced in a fixed order."""
from __future__ import annotations

from typing import Optional

import torch

from ... import _triton_utils as tu
from ...backends import reasons

# the files whose GPU evidence this backend rests on (semask_kernels/evidence.py): this file alone
SOURCES = ()

tl = tu.language()
MAX_CHANNELS = 16384  # a row block holds whole rows in registers


@tu.jit
def _round(v, OUT_DT: tl.constexpr, RNE_BF16: tl.constexpr):
    """float32 ``v`` in ``OUT_DT``, rounded to nearest even. The interpreter truncates float32 -> bfloat16
    (triton 3.8), so there (RNE_BF16) the rounding is done on the bits first; a GPU cast already rounds."""
    if RNE_BF16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        v = bits.to(tl.float32, bitcast=True)
    return v.to(OUT_DT)


@tu.jit
def _row_stats(X, R, rows, cols, ok, sxm, sxc, srm, src, C, eps, OUT_DT: tl.constexpr, RNE_BF16: tl.constexpr):
    x = tl.load(X + rows[:, None] * sxm + cols[None, :] * sxc, mask=ok, other=0.0).to(tl.float32)
    r = tl.load(R + rows[:, None] * srm + cols[None, :] * src, mask=ok, other=0.0).to(tl.float32)
    s = _round(x + r, OUT_DT, RNE_BF16)  # one rounding, as the stock add in x's dtype
    sf = s.to(tl.float32)
    mean = tl.sum(sf, axis=1) / C
    d = tl.where(ok, sf - mean[:, None], 0.0)
    var = tl.sum(d * d, axis=1) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    return s, d * rstd[:, None], rstd


@tu.jit
def _add_ln_fwd_kernel(X, R, W, B, S, Y, M, C, sxm, sxc, srm, src, eps,
                       HAS_BIAS: tl.constexpr, RNE_BF16: tl.constexpr, BLOCK_R: tl.constexpr,
                       BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    c_ok = cols < C
    ok = (rows < M)[:, None] & c_ok[None, :]
    s, xhat, rstd = _row_stats(X, R, rows, cols, ok, sxm, sxc, srm, src, C, eps, S.dtype.element_ty, RNE_BF16)
    y = xhat * tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y += tl.load(B + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    out = rows[:, None] * C + cols[None, :]
    tl.store(S + out, s, mask=ok)
    tl.store(Y + out, _round(y, Y.dtype.element_ty, RNE_BF16), mask=ok)


@tu.jit
def _add_ln_bwd_kernel(DS, DY, X, R, W, DX, DR, DW_PART, DB_PART, M, C, sxm, sxc, srm, src, eps,
                       RNE_BF16: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    c_ok = cols < C
    ok = (rows < M)[:, None] & c_ok[None, :]
    s, xhat, rstd = _row_stats(X, R, rows, cols, ok, sxm, sxc, srm, src, C, eps, DX.dtype.element_ty, RNE_BF16)
    at = rows[:, None] * C + cols[None, :]
    dy = tl.load(DY + at, mask=ok, other=0.0).to(tl.float32)
    ds = tl.load(DS + at, mask=ok, other=0.0).to(tl.float32)
    g = dy * tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    c1 = tl.sum(g * xhat, axis=1) / C
    c2 = tl.sum(g, axis=1) / C
    dx = ds + (g - c2[:, None] - xhat * c1[:, None]) * rstd[:, None]
    dx = _round(tl.where(ok, dx, 0.0), DX.dtype.element_ty, RNE_BF16)
    tl.store(DX + at, dx, mask=ok)
    tl.store(DR + at, dx, mask=ok)
    tl.store(DW_PART + pid * BLOCK_C + cols, tl.sum(dy * xhat, axis=0))
    tl.store(DB_PART + pid * BLOCK_C + cols, tl.sum(dy, axis=0))


def _blocks(c: int) -> tuple[int, int, int]:
    """(rows per program, BLOCK_C, num_warps): about 4096 elements a program, whole rows."""
    block_c = tu.next_pow2(c, 16)
    block_r = max(1, min(64, 4096 // block_c))
    return block_r, block_c, 4 if block_r * block_c >= 2048 else 2


def _rne_bf16(x) -> bool:
    return x.dtype == torch.bfloat16 and tu.INTERPRETED


def _rows(t):
    return t.reshape(-1, t.shape[-1])


def forward(x, residual, weight, bias, eps):
    """(s, y) of x's shape and dtype."""
    x2, r2 = _rows(x), _rows(residual)
    m, c = x2.shape
    s, y = x2.new_empty((m, c)), x2.new_empty((m, c))
    if m and c:
        block_r, block_c, warps = _blocks(c)
        with tu.device_guard(x):
            _add_ln_fwd_kernel[(-(-m // block_r),)](
                x2, r2, weight, bias if bias is not None else weight, s, y, m, c,
                x2.stride(0), x2.stride(1), r2.stride(0), r2.stride(1), float(eps),
                HAS_BIAS=bias is not None, RNE_BF16=_rne_bf16(x), BLOCK_R=block_r, BLOCK_C=block_c, num_warps=warps)
    return s.reshape(x.shape), y.reshape(x.shape)


def backward(grad_sum, grad_normed, x, residual, weight, bias, eps):
    """(dx, dresidual, dweight, dbias or None); fixed-order reductions, bitwise repeatable."""
    x2, r2 = _rows(x), _rows(residual)
    m, c = x2.shape
    dx, dr = x2.new_empty((m, c)), x2.new_empty((m, c))
    block_r, block_c, warps = _blocks(c)
    programs = -(-m // block_r)
    parts = torch.zeros((2, programs, block_c), device=x.device, dtype=torch.float32)
    if m and c:
        with tu.device_guard(x):
            _add_ln_bwd_kernel[(programs,)](
                _rows(grad_sum).contiguous(), _rows(grad_normed).contiguous(), x2, r2, weight, dx, dr,
                parts[0], parts[1], m, c, x2.stride(0), x2.stride(1), r2.stride(0), r2.stride(1), float(eps),
                RNE_BF16=_rne_bf16(x), BLOCK_R=block_r, BLOCK_C=block_c, num_warps=warps)
    dweight = parts[0].sum(0)[:c].to(weight.dtype)  # two tensors: a custom op's outputs may not alias
    dbias = parts[1].sum(0)[:c].to(bias.dtype) if bias is not None else None
    return dx.reshape(x.shape), dr.reshape(x.shape), dweight, dbias


def available() -> Optional[str]:
    return tu.triton_available()


def supports(x, residual, weight, bias, eps) -> Optional[str]:
    c = x.shape[-1] if x.dim() else 0
    # residual, weight and bias have x's device and dtype (arguments()): x speaks for them
    return reasons(tu.triton_available(), tu.device_ok(x, "x"), tu.dtype_ok(x, "x"),
                   f"C={c} channels exceed the {MAX_CHANNELS} one row block holds" if c > MAX_CHANNELS else None)
