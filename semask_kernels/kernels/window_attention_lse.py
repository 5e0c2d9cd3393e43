"""Window-attention Triton kernels of the ``triton.onepass`` variant for windows larger than one tile (N > 64
tokens: 12x12, 14x14), in the shifted geometry of ``shifted_window_attention``: the forward saves the row
log-sum-exp, and the backward starts from it instead of recomputing the forward (ARCHITECTURE.md, "Saved
softmax statistics").

- ``_lse_fwd_kernel``: a block of BLOCK_M query rows of one (window, head), online softmax over key blocks of
  BLOCK_N; writes the output and, with ``SAVE_LSE``, the row log-sum-exp (fp32, (windows, heads, N), log2 units,
  scale folded in), which the op returns as its second output when a gradient is needed.
- ``_lse_bwd_q_kernel``: the backward's first pass. delta = rowsum(dO·O) from the saved output and the incoming
  gradient of its rows (stored for the second pass), then dQ of its rows over every key block, P rebuilt from
  the saved log-sum-exp. No statistics pass, no forward rerun.
- The second pass is the verified dK/dV kernel of ``window_attention.py`` (``_bwd_kv_kernel``, one key block
  against every query row, dK, dV complete without atomics) fed the saved log-sum-exp and this delta. Its
  per-program score-gradient sums fold into the bias-table bins through ``window_attention_onepass.table_bins``
  (a fixed order): the gradients are bitwise repeatable.

Traffic per backward (activation-sized transfers): q, dO, O in and k, v per query block (L2), dq out in the
first pass; q, dO, k, v in and dk, dv out in the second: 12, against 15 with the recomputing statistics pass.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _triton_utils as tu
from . import window_attention as wa
from .window_attention_onepass import table_bins
from .window_attention_tiles import _bias_tile, _dot, _geometry, _load_tokens, _mask_tile, _offsets, _store_tokens

tl = tu.language()
LOG2E = tl.constexpr(1.4426950408889634) if tu.triton is not None else 1.4426950408889634


# ------------------------------------------------------------------------------------------------------ kernels

@tu.jit
def _lse_fwd_kernel(QKV, QKVB, O, LSE, TABLE,
                    s0, s1, s2, s3, so0, so1, so2, so3, st0, st1,
                    n_windows, wpp, NH, C, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                    N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PAD_THEN_ROLL: tl.constexpr,
                    SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr, HAS_QKV_BIAS: tl.constexpr,
                    SAVE_LSE: tl.constexpr, IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    h = tl.program_id(2)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    cd = tl.arange(0, D_PAD)
    qk_scale = scale * LOG2E
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, rows, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True, PAD_THEN_ROLL)
        q = _load_tokens(QKV, QKVB, _offsets(b, y, x, h, D, s0, s1, s2, s3, True), pad, row_ok, h, cd, D, s3,
                         HAS_QKV_BIAS)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < N
            bc, yc, xc, padc, phc, pwc = _geometry(w, cols, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True,
                                                   PAD_THEN_ROLL)
            offc = _offsets(bc, yc, xc, h, D, s0, s1, s2, s3, True)
            k = _load_tokens(QKV + C * s3, QKVB + C, offc, padc, col_ok, h, cd, D, s3, HAS_QKV_BIAS)
            v = _load_tokens(QKV + 2 * C * s3, QKVB + 2 * C, offc, padc, col_ok, h, cd, D, s3, HAS_QKV_BIAS)
            s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
            s += _bias_tile(TABLE, st0, st1, h, rows, cols, N, WH, WW) * LOG2E
            if SHIFT_H or SHIFT_W:
                s += _mask_tile(TABLE, 0, 0, 0, 1, w, rows, cols, ph, pw, phc, pwc, HP, WP, SH, SW, mask_value,
                                N, WH, WW, True, SHIFT_H, SHIFT_W) * LOG2E
            s = tl.where(col_ok[None, :], s, float("-inf"))
            # every key block has a column < N and the bias and shift mask are finite, so m_new is finite from
            # block 0 on for every row (rows past N see zeros): no -inf - -inf
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _dot(p.to(IN_DT), v, DOT_DT, PREC)
            m_i = m_new
        _store_tokens(O, _offsets(b, y, x, h, D, so0, so1, so2, so3, True), pad, row_ok, cd, D, so3,
                      acc / l_i[:, None])
        if SAVE_LSE:  # padding queries too: the second pass rebuilds their (finite) P rows
            tl.store(LSE + (tl.cast(w, tl.int64) * NH + h) * N + rows, m_i + tl.log2(l_i), mask=row_ok)


@tu.jit
def _lse_bwd_q_kernel(QKV, QKVB, O, DO, DQKV, LSE, DELTA, TABLE,
                      s0, s1, s2, s3, so0, so1, so2, so3, sg0, sg1, sg2, sg3, dq0, dq1, dq2, dq3, st0, st1,
                      n_windows, wpp, NH, C, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                      N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PAD_THEN_ROLL: tl.constexpr,
                      SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr, HAS_QKV_BIAS: tl.constexpr,
                      IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    h = tl.program_id(2)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    cd = tl.arange(0, D_PAD)
    qk_scale = scale * LOG2E
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, rows, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True, PAD_THEN_ROLL)
        # padding queries: dO and O are zero rows (they have no place in the output), so their delta is 0
        do = _load_tokens(DO, DO, _offsets(b, y, x, h, D, sg0, sg1, sg2, sg3, True), pad, row_ok, h, cd, D, sg3,
                          False)
        o = _load_tokens(O, O, _offsets(b, y, x, h, D, so0, so1, so2, so3, True), pad, row_ok, h, cd, D, so3,
                         False)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
        base = (tl.cast(w, tl.int64) * NH + h) * N
        tl.store(DELTA + base + rows, delta, mask=row_ok)
        lse = tl.load(LSE + base + rows, mask=row_ok, other=0.0)
        q = _load_tokens(QKV, QKVB, _offsets(b, y, x, h, D, s0, s1, s2, s3, True), pad, row_ok, h, cd, D, s3,
                         HAS_QKV_BIAS)
        dq = tl.zeros([BLOCK_M, D_PAD], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < N
            bc, yc, xc, padc, phc, pwc = _geometry(w, cols, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True,
                                                   PAD_THEN_ROLL)
            offc = _offsets(bc, yc, xc, h, D, s0, s1, s2, s3, True)
            k = _load_tokens(QKV + C * s3, QKVB + C, offc, padc, col_ok, h, cd, D, s3, HAS_QKV_BIAS)
            v = _load_tokens(QKV + 2 * C * s3, QKVB + 2 * C, offc, padc, col_ok, h, cd, D, s3, HAS_QKV_BIAS)
            s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
            s += _bias_tile(TABLE, st0, st1, h, rows, cols, N, WH, WW) * LOG2E
            if SHIFT_H or SHIFT_W:
                s += _mask_tile(TABLE, 0, 0, 0, 1, w, rows, cols, ph, pw, phc, pwc, HP, WP, SH, SW, mask_value,
                                N, WH, WW, True, SHIFT_H, SHIFT_W) * LOG2E
            p = tl.where(row_ok[:, None] & col_ok[None, :], tl.exp2(s - lse[:, None]), 0.0)
            dp = _dot(do, tl.trans(v), DOT_DT, PREC)
            ds = p * (dp - delta[:, None])
            dq += _dot(ds.to(IN_DT), k, DOT_DT, PREC)
        _store_tokens(DQKV, _offsets(b, y, x, h, D, dq0, dq1, dq2, dq3, True), pad, row_ok, cd, D, dq3, dq * scale)


# ------------------------------------------------------------------------------------------------------- host side

def _strides(prefix: str, t: Tensor) -> dict:
    return {f"{prefix}{i}": s for i, s in enumerate(t.stride())}


def _scalars(p: wa.Problem, qkv: Tensor, cfg: wa.Config) -> dict:
    """The keyword arguments both kernels of this file take besides their tensors and output strides."""
    s = p.shift
    return dict(**_strides("s", qkv), st0=p.table.stride(0), st1=p.table.stride(1), n_windows=p.n_windows,
                wpp=cfg.wpp, NH=p.heads, C=p.heads * p.d, NWIN=s.nwin, NWC=s.nwc, H=s.h, W=s.w, HP=s.hp, WP=s.wp,
                SH=s.sh, SW=s.sw, scale=float(p.scale), mask_value=float(s.mask_value), N=p.n, WH=p.window[0],
                WW=p.window[1], D=p.d, D_PAD=cfg.d_pad, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                PAD_THEN_ROLL=s.pad_then_roll, SHIFT_H=s.sh > 0, SHIFT_W=s.sw > 0,
                HAS_QKV_BIAS=p.has_padding_tokens, IN_DT=tu.tl_dtype(qkv.dtype), DOT_DT=tu.dot_dtype(qkv.dtype),
                PREC=tu.dot_precision(qkv.dtype), num_warps=cfg.fwd_warps, num_stages=cfg.stages)


def _config(p: wa.Problem) -> wa.Config:
    return wa.config(p.n, p.d, p.d, p.n_windows, p.heads, p.q.dtype)


def _bias_pointers(p: wa.Problem, qkv: Tensor) -> Tensor:
    return p.qkv_bias if p.qkv_bias is not None else qkv  # never read without padding tokens and a bias


def empty_lse(qkv: Tensor) -> Tensor:
    """The statistics output when none is saved: an empty fp32 tensor."""
    return qkv.new_empty(0, dtype=torch.float32)


def forward(p: wa.Problem, qkv: Tensor, out: Tensor, save_lse: bool) -> tuple[Tensor, Tensor]:
    """Write the attention output (B, H, W, C) into ``out``; return (out, lse): lse (windows, heads, N) fp32 in
    log2 units when ``save_lse``, else empty."""
    lse = (torch.empty(p.n_windows, p.heads, p.n, dtype=torch.float32, device=qkv.device) if save_lse
           else empty_lse(qkv))
    if p.n_windows == 0 or out.numel() == 0:
        return out, lse
    cfg = _config(p)
    grid = (-(-p.n_windows // cfg.wpp), cfg.num_mb, p.heads)
    with tu.device_guard(out):
        _lse_fwd_kernel[grid](QKV=qkv, QKVB=_bias_pointers(p, qkv), O=out, LSE=lse if save_lse else out,
                              TABLE=p.table, **_strides("so", out), SAVE_LSE=save_lse, **_scalars(p, qkv, cfg))
    return out, lse


def backward(p: wa.Problem, qkv: Tensor, out: Tensor, lse: Tensor, grad: Tensor, dqkv: Tensor
             ) -> tuple[Tensor, Optional[Tensor]]:
    """Write dqkv from the forward's output ``out`` and its saved ``lse``; return (d bias_table, d qkv_bias or
    None). Two launches over the activations (dQ with delta, then dK/dV) and the bins reduction; bitwise
    repeatable."""
    c = p.heads * p.d
    cfg = _config(p)
    device = qkv.device
    delta = torch.empty_like(lse)
    with tu.device_guard(grad):
        _lse_bwd_q_kernel[(-(-p.n_windows // cfg.wpp), cfg.num_mb, p.heads)](
            QKV=qkv, QKVB=_bias_pointers(p, qkv), O=out, DO=grad, DQKV=dqkv, LSE=lse, DELTA=delta, TABLE=p.table,
            **_strides("so", out), **_strides("sg", grad), **_strides("dq", dqkv), **_scalars(p, qkv, cfg))
        groups = -(-p.n_windows // cfg.wpp_kv)
        nk_pad = cfg.num_kb * cfg.block_kv
        pt = torch.empty(groups, p.heads, cfg.block_q, nk_pad, dtype=torch.float32, device=device)
        pb = (torch.empty(cfg.num_kb, groups, 2, p.heads, cfg.d_pad, dtype=torch.float32, device=device)
              if p.has_padding_tokens else lse)
        dq, dk, dv = dqkv[..., :c], dqkv[..., c:2 * c], dqkv[..., 2 * c:]
        wa._bwd_kv_kernel[(groups, cfg.num_kb, p.heads)](
            DO=grad, DQ=dq, DK=dk, DVT=dv, LSE=lse, DELTA=delta, PT=pt, PB=pb, **_strides("so", grad),
            **_strides("dq", dq), **_strides("dk", dk), **_strides("dv", dv), wpp=cfg.wpp_kv, n_groups=groups,
            **wa._common(p), BLOCK_Q=cfg.block_q, BLOCK_N=cfg.block_kv, NK_PAD=nk_pad, FUSE_DQ=False,
            num_warps=cfg.kv_warps, **wa._constexprs(p, cfg))
        dtable = table_bins(pt, p.window, nk_pad)
    dbias = None
    if p.has_padding_tokens:
        dkv = pb.sum((0, 1))[..., :p.d]  # (2, nH, d): fixed-order sum over the programs
        dbias = torch.cat([torch.zeros_like(dkv[:1]), dkv]).reshape(-1).to(qkv.dtype)  # padded queries: no grad
    elif p.qkv_bias is not None:
        dbias = torch.zeros_like(p.qkv_bias)  # no padding token: qkv_bias does not enter the output
    return dtable.to(p.table.dtype), dbias
