"""The window-attention Triton kernel family, shared by the Triton backends of ``window_attention`` and
``shifted_window_attention`` (each op's triton.py only describes its geometry as a ``Problem`` and calls
``attention_forward`` / ``attention_backward`` below; the device helpers are in ``window_attention_tiles.py``).

One kernel family, two geometries (constexpr ``SHIFTED``):

- plain: q, k, v are (B_, nH, N, d) with any strides; token t of window w, head h sits at
  ``w·s0 + h·s1 + t·s2`` (+ column·s3); an optional additive mask (nW, N, N) is read at mask[w mod nW].
- shifted: q, k, v are the three column slices of qkv (B, H, W, 3C); token t of window w sits at the source
  position (y, x) computed from its padded-grid coordinates (roll, padding and partition are index arithmetic,
  see ``_geometry``), or is a padding token that loads ``qkv_bias`` (zeros if None); the shift mask comes from the
  grid coordinates' regions. Nothing is copied to a window layout.

In both, the relative-position bias is gathered from the table by idx(i, j) computed from the coordinates, and
no (N, N) tensor is materialized. Softmax and all accumulation are fp32 (base-2 exponentials, scale folded in);
results are stored in the input dtype.

Kernels (each program owns one head and a run of ``wpp`` consecutive windows, grid (groups, blocks, heads)):

- ``_fwd_kernel``: a block of BLOCK_M query rows, online softmax over key blocks of BLOCK_N. With
  ``STATS`` it does not write the output but the row statistics lse (log2 units) and delta = rowsum(dO·O)
  that the backward needs: the op's backward receives only the inputs, so statistics are *recomputed* (one
  forward's worth of work; nothing is kept between forward and backward).
- ``_bwd_kv_kernel``: one key block of BLOCK_N against *all* query rows of the window (BLOCK_Q >= N), so dK and
  dV of the block are complete and stored without atomics; when one key block covers the window it also
  writes dQ. The gradient of the scores summed over its windows is kept in registers and written once per
  program to a partial buffer (groups, nH, BLOCK_Q, NK_PAD); the same holds for the padding tokens' dK, dV
  (-> d qkv_bias). Both are reduced on the host in a fixed order (``torch.sum`` and a gather through a cached
  index), so gradients are bitwise repeatable: there are no atomics anywhere.
- ``_bwd_q_kernel``: dQ when the window spans several key blocks (N > BLOCK_N), recomputing P as FlashAttention
  2 does.

Several windows per program (instead of packing two 49-token windows block-diagonally into 128 rows, which would
compute a 128x128 score tile for 2x49x49 useful entries, 29% instead of 59% for one window in 64x64): the loop
reuses the head's bias tile and index math across windows and shrinks the backward's partial buffers ``wpp``-fold.
"""

import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .. import _triton_utils as tu
from ..backends import reasons
from ..ops._windows import relative_position_index
from .window_attention_tiles import (_bias_tile, _dot, _geometry, _load_tokens, _mask_tile, _offsets,
                                     _store_tokens)

tl = tu.language()
# jit kernels may read only constexpr globals
LOG2E = tl.constexpr(1.4426950408889634) if tu.triton is not None else 1.4426950408889634
TARGET_PROGRAMS = 1024  # about 8 waves on a 132-SM GPU: below it, one window per program
MAX_TOKENS = 1024
MAX_HEAD_DIM = 256


# ------------------------------------------------------------------------------------------------------ kernels

@tu.jit
def _fwd_kernel(Q, K, V, O, QB, KB, VB, TABLE, MASK, DO, LSE, DELTA,
                sq0, sq1, sq2, sq3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, so0, so1, so2, so3,
                st0, st1, sm0, sm1, sm2,
                n_windows, wpp, n_mask, NH, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
                D_PAD: tl.constexpr, DV_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                SHIFTED: tl.constexpr, PAD_THEN_ROLL: tl.constexpr, SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr,
                HAS_TABLE: tl.constexpr, MASKED: tl.constexpr, HAS_QKV_BIAS: tl.constexpr, STATS: tl.constexpr,
                ONE_KB: tl.constexpr, IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    h = tl.program_id(2)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    cd = tl.arange(0, D_PAD)
    cv = tl.arange(0, DV_PAD)
    qk_scale = scale * LOG2E
    if HAS_TABLE and ONE_KB:  # the head's bias tile serves every window of this program
        bias0 = _bias_tile(TABLE, st0, st1, h, rows, tl.arange(0, BLOCK_N), N, WH, WW) * LOG2E
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, rows, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED, PAD_THEN_ROLL)
        q = _load_tokens(Q, QB, _offsets(b, y, x, h, D, sq0, sq1, sq2, sq3, SHIFTED), pad, row_ok, h, cd, D, sq3,
                         HAS_QKV_BIAS)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, DV_PAD], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < N
            bc, yc, xc, padc, phc, pwc = _geometry(w, cols, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED,
                                                   PAD_THEN_ROLL)
            k = _load_tokens(K, KB, _offsets(bc, yc, xc, h, D, sk0, sk1, sk2, sk3, SHIFTED), padc, col_ok, h, cd,
                             D, sk3, HAS_QKV_BIAS)
            v = _load_tokens(V, VB, _offsets(bc, yc, xc, h, DV, sv0, sv1, sv2, sv3, SHIFTED), padc, col_ok, h, cv,
                             DV, sv3, HAS_QKV_BIAS)
            s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
            if HAS_TABLE:
                if ONE_KB:
                    s += bias0
                else:
                    s += _bias_tile(TABLE, st0, st1, h, rows, cols, N, WH, WW) * LOG2E
            if MASKED:
                s += _mask_tile(MASK, sm0, sm1, sm2, n_mask, w, rows, cols, ph, pw, phc, pwc, HP, WP, SH, SW,
                                mask_value, N, WH, WW, SHIFTED, SHIFT_H, SHIFT_W) * LOG2E
            s = tl.where(col_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a fully masked block must not make NaNs
            alpha = tl.exp2(m_i - m_use)
            p = tl.exp2(s - m_use[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _dot(p.to(IN_DT), v, DOT_DT, PREC)
            m_i = m_new
        o = acc / l_i[:, None]
        offo = _offsets(b, y, x, h, DV, so0, so1, so2, so3, SHIFTED)
        if STATS:
            do = _load_tokens(DO, DO, offo, pad, row_ok, h, cv, DV, so3, False).to(tl.float32)
            base = (tl.cast(w, tl.int64) * NH + h) * N
            tl.store(LSE + base + rows, tl.where(m_i == float("-inf"), 0.0, m_i) + tl.log2(l_i), mask=row_ok)
            tl.store(DELTA + base + rows, tl.sum(o * do, 1), mask=row_ok)
        else:
            _store_tokens(O, offo, pad, row_ok, cv, DV, so3, o)


@tu.jit
def _bwd_kv_kernel(Q, K, V, DO, DQ, DK, DVT, QB, KB, VB, TABLE, MASK, LSE, DELTA, PT, PB,
                   sq0, sq1, sq2, sq3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, so0, so1, so2, so3,
                   dq0, dq1, dq2, dq3, dk0, dk1, dk2, dk3, dv0, dv1, dv2, dv3, st0, st1, sm0, sm1, sm2,
                   n_windows, wpp, n_groups, n_mask, NH, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                   N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
                   D_PAD: tl.constexpr, DV_PAD: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
                   NK_PAD: tl.constexpr,
                   SHIFTED: tl.constexpr, PAD_THEN_ROLL: tl.constexpr, SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr,
                   HAS_TABLE: tl.constexpr, MASKED: tl.constexpr, HAS_QKV_BIAS: tl.constexpr,
                   FUSE_DQ: tl.constexpr, IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    kb = tl.program_id(1)
    h = tl.program_id(2)
    rows = tl.arange(0, BLOCK_Q)  # every query row of the window: dK, dV of this key block end here
    row_ok = rows < N
    cols = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    valid = row_ok[:, None] & col_ok[None, :]
    cd = tl.arange(0, D_PAD)
    cv = tl.arange(0, DV_PAD)
    qk_scale = scale * LOG2E
    if HAS_TABLE:
        bias0 = _bias_tile(TABLE, st0, st1, h, rows, cols, N, WH, WW) * LOG2E
        dtable = tl.zeros([BLOCK_Q, BLOCK_N], tl.float32)
    if HAS_QKV_BIAS:
        dkb = tl.zeros([D_PAD], tl.float32)
        dvb = tl.zeros([DV_PAD], tl.float32)
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, rows, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED, PAD_THEN_ROLL)
        bc, yc, xc, padc, phc, pwc = _geometry(w, cols, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED,
                                               PAD_THEN_ROLL)
        q = _load_tokens(Q, QB, _offsets(b, y, x, h, D, sq0, sq1, sq2, sq3, SHIFTED), pad, row_ok, h, cd, D, sq3,
                         HAS_QKV_BIAS)
        do = _load_tokens(DO, DO, _offsets(b, y, x, h, DV, so0, so1, so2, so3, SHIFTED), pad, row_ok, h, cv, DV,
                          so3, False)
        offk = _offsets(bc, yc, xc, h, D, sk0, sk1, sk2, sk3, SHIFTED)
        offv = _offsets(bc, yc, xc, h, DV, sv0, sv1, sv2, sv3, SHIFTED)
        k = _load_tokens(K, KB, offk, padc, col_ok, h, cd, D, sk3, HAS_QKV_BIAS)
        v = _load_tokens(V, VB, offv, padc, col_ok, h, cv, DV, sv3, HAS_QKV_BIAS)
        base = (tl.cast(w, tl.int64) * NH + h) * N
        lse = tl.load(LSE + base + rows, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + base + rows, mask=row_ok, other=0.0)
        s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
        if HAS_TABLE:
            s += bias0
        if MASKED:
            s += _mask_tile(MASK, sm0, sm1, sm2, n_mask, w, rows, cols, ph, pw, phc, pwc, HP, WP, SH, SW,
                            mask_value, N, WH, WW, SHIFTED, SHIFT_H, SHIFT_W) * LOG2E
        p = tl.where(valid, tl.exp2(s - lse[:, None]), 0.0)
        dv = _dot(tl.trans(p.to(IN_DT)), do, DOT_DT, PREC)
        dp = _dot(do, tl.trans(v), DOT_DT, PREC)
        ds = p * (dp - delta[:, None])  # d loss / d score (score = scale·q·k + bias + mask)
        dk = _dot(tl.trans(ds.to(IN_DT)), q, DOT_DT, PREC) * scale
        _store_tokens(DK, _offsets(bc, yc, xc, h, D, dk0, dk1, dk2, dk3, SHIFTED), padc, col_ok, cd, D, dk3, dk)
        _store_tokens(DVT, _offsets(bc, yc, xc, h, DV, dv0, dv1, dv2, dv3, SHIFTED), padc, col_ok, cv, DV, dv3, dv)
        if HAS_QKV_BIAS:  # padding keys/values are qkv_bias: their gradients sum into it
            padk = (padc & col_ok)[:, None]
            dkb += tl.sum(tl.where(padk, dk, 0.0), 0)
            dvb += tl.sum(tl.where(padk, dv, 0.0), 0)
        if FUSE_DQ:
            dq = _dot(ds.to(IN_DT), k, DOT_DT, PREC) * scale
            _store_tokens(DQ, _offsets(b, y, x, h, D, dq0, dq1, dq2, dq3, SHIFTED), pad, row_ok, cd, D, dq3, dq)
        if HAS_TABLE:
            dtable += ds
    if HAS_TABLE:  # this program's partial sum; reduced on the host in a fixed order
        pt = PT + ((tl.cast(g, tl.int64) * NH + h) * BLOCK_Q + rows[:, None]) * NK_PAD + cols[None, :]
        tl.store(pt, dtable)
    if HAS_QKV_BIAS:
        pb = PB + ((tl.cast(kb, tl.int64) * n_groups + g) * 2 * NH + h) * D_PAD
        tl.store(pb + cd, dkb)
        tl.store(pb + NH * D_PAD + cv, dvb)  # shifted geometry: DV == D


@tu.jit
def _bwd_q_kernel(Q, K, V, DO, DQ, QB, KB, VB, TABLE, MASK, LSE, DELTA,
                  sq0, sq1, sq2, sq3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, so0, so1, so2, so3,
                  dq0, dq1, dq2, dq3, st0, st1, sm0, sm1, sm2,
                  n_windows, wpp, n_mask, NH, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                  N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
                  D_PAD: tl.constexpr, DV_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  SHIFTED: tl.constexpr, PAD_THEN_ROLL: tl.constexpr, SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr,
                  HAS_TABLE: tl.constexpr, MASKED: tl.constexpr, HAS_QKV_BIAS: tl.constexpr,
                  IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    h = tl.program_id(2)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    cd = tl.arange(0, D_PAD)
    cv = tl.arange(0, DV_PAD)
    qk_scale = scale * LOG2E
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, rows, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED, PAD_THEN_ROLL)
        q = _load_tokens(Q, QB, _offsets(b, y, x, h, D, sq0, sq1, sq2, sq3, SHIFTED), pad, row_ok, h, cd, D, sq3,
                         HAS_QKV_BIAS)
        do = _load_tokens(DO, DO, _offsets(b, y, x, h, DV, so0, so1, so2, so3, SHIFTED), pad, row_ok, h, cv, DV,
                          so3, False)
        base = (tl.cast(w, tl.int64) * NH + h) * N
        lse = tl.load(LSE + base + rows, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + base + rows, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, D_PAD], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < N
            bc, yc, xc, padc, phc, pwc = _geometry(w, cols, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, SHIFTED,
                                                   PAD_THEN_ROLL)
            k = _load_tokens(K, KB, _offsets(bc, yc, xc, h, D, sk0, sk1, sk2, sk3, SHIFTED), padc, col_ok, h, cd,
                             D, sk3, HAS_QKV_BIAS)
            v = _load_tokens(V, VB, _offsets(bc, yc, xc, h, DV, sv0, sv1, sv2, sv3, SHIFTED), padc, col_ok, h, cv,
                             DV, sv3, HAS_QKV_BIAS)
            s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
            if HAS_TABLE:
                s += _bias_tile(TABLE, st0, st1, h, rows, cols, N, WH, WW) * LOG2E
            if MASKED:
                s += _mask_tile(MASK, sm0, sm1, sm2, n_mask, w, rows, cols, ph, pw, phc, pwc, HP, WP, SH, SW,
                                mask_value, N, WH, WW, SHIFTED, SHIFT_H, SHIFT_W) * LOG2E
            p = tl.where(row_ok[:, None] & col_ok[None, :], tl.exp2(s - lse[:, None]), 0.0)
            dp = _dot(do, tl.trans(v), DOT_DT, PREC)
            ds = p * (dp - delta[:, None])
            dq += _dot(ds.to(IN_DT), k, DOT_DT, PREC)
        _store_tokens(DQ, _offsets(b, y, x, h, D, dq0, dq1, dq2, dq3, SHIFTED), pad, row_ok, cd, D, dq3, dq * scale)


# ------------------------------------------------------------------------------------------------------- host side

@dataclass(frozen=True, kw_only=True)
class Shift:
    """The shifted-window geometry of a (B, H, W, ·) map: windows per image, windows per grid row, map and
    padded sizes, shift, pad order and the shift-mask value."""
    nwin: int
    nwc: int
    h: int
    w: int
    hp: int
    wp: int
    sh: int
    sw: int
    pad_then_roll: bool
    mask_value: float


@dataclass(kw_only=True)
class Problem:
    """One attention call as the kernels see it. q, k, v (and the gradients) are addressed by their 4 strides:
    (B_, nH, N, d) without ``shift``; (B, H, W, channel) slices of qkv with ``shift``."""
    q: Tensor
    k: Tensor
    v: Tensor
    n_windows: int
    heads: int
    window: tuple[int, int]
    d: int
    dv: int
    table: Optional[Tensor]
    mask: Optional[Tensor]
    scale: float
    shift: Optional[Shift] = None
    qkv_bias: Optional[Tensor] = None  # (3C,), contiguous; with ``shift`` only

    @property
    def n(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def has_padding_tokens(self) -> bool:
        """Whether some tokens read qkv_bias (the kernels skip that path when the windows tile the map)."""
        s = self.shift
        return self.qkv_bias is not None and s is not None and (s.hp > s.h or s.wp > s.w)


@dataclass(frozen=True, kw_only=True)
class Config:
    n_pad: int
    d_pad: int
    dv_pad: int
    block_m: int     # forward / dQ kernels: query rows per block ...
    block_n: int     # ... and keys per step of the online softmax
    num_mb: int
    wpp: int         # windows per program of the forward / dQ kernels
    fwd_warps: int
    block_q: int     # dK/dV kernel: all query rows of a window ...
    block_kv: int    # ... against one block of keys
    num_kb: int
    wpp_kv: int
    kv_warps: int
    stages: int = 1  # software pipelining of the window loop would keep the next windows' tiles in registers


def _windows_per_program(pairs: int) -> int:
    """Keep about TARGET_PROGRAMS programs: more windows per program only once there is parallelism to spare."""
    return max(1, min(16, pairs // TARGET_PROGRAMS))


def config(n: int, d: int, dv: int, n_windows: int, heads: int, dtype: torch.dtype) -> Config:
    """Launch configuration by rule (no autotuning, no device query), cached per shape and dtype."""
    def rule() -> Config:
        # Picked from offline sm_90 builds (register and spill counts, not timings) of the Swin shapes.
        n_pad, d_pad, dv_pad = tu.next_pow2(n, 16), tu.next_pow2(d, 16), tu.next_pow2(dv, 16)
        d_max = max(d_pad, dv_pad)
        block_m = min(n_pad, 32 if d_max >= 128 else 64)
        block_n = min(n_pad, 64 if n_pad <= 64 and d_max <= 64 else 32)
        num_mb = -(-n // block_m)
        block_q = n_pad
        block_kv = max(16, min(n_pad, 64, (4096 if d_max <= 32 else 1024) // n_pad))  # = 64 fuses dQ for N <= 64
        num_kb = -(-n // block_kv)
        return Config(n_pad=n_pad, d_pad=d_pad, dv_pad=dv_pad, block_m=block_m, block_n=block_n, num_mb=num_mb,
                      wpp=_windows_per_program(n_windows * heads * num_mb), fwd_warps=4,
                      block_q=block_q, block_kv=block_kv, num_kb=num_kb,
                      wpp_kv=_windows_per_program(n_windows * heads * num_kb), kv_warps=8 if n_pad >= 64 else 4)
    return tu.cached_config(("window_attention", n, d, dv, n_windows, heads, dtype), rule)


def _strides(prefix: str, t: Tensor) -> dict:
    """``{prefix0: t.stride(0), ...}``: a tensor's 4 strides under the kernels' parameter names (e.g. sq0..sq3)."""
    return {f"{prefix}{i}": s for i, s in enumerate(t.stride())}


def _common(p: Problem) -> dict:
    """The keyword arguments every kernel of the family takes: the padding tokens' q/k/v vectors, the bias table and
    the mask (a dummy pointer when absent) with their strides, q/k/v and their strides, the geometry scalars."""
    s, table, mask = p.shift, p.table, p.mask
    if p.qkv_bias is None:
        qb = kb = vb = p.q  # never read (HAS_QKV_BIAS is False)
    else:
        c = p.qkv_bias.shape[0] // 3
        qb, kb, vb = p.qkv_bias[:c], p.qkv_bias[c:2 * c], p.qkv_bias[2 * c:]
    st = table.stride() if table is not None else (0, 0)
    sm = mask.stride() if mask is not None else (0, 0, 0)
    geometry = (dict(NWIN=s.nwin, NWC=s.nwc, H=s.h, W=s.w, HP=s.hp, WP=s.wp, SH=s.sh, SW=s.sw) if s else
                dict(NWIN=1, NWC=1, H=1, W=1, HP=1, WP=1, SH=0, SW=0))
    return dict(Q=p.q, K=p.k, V=p.v, QB=qb, KB=kb, VB=vb,
                TABLE=table if table is not None else p.q, st0=st[0], st1=st[1],
                MASK=mask if mask is not None else p.q, sm0=sm[0], sm1=sm[1], sm2=sm[2],
                **_strides("sq", p.q), **_strides("sk", p.k), **_strides("sv", p.v),
                n_windows=p.n_windows, n_mask=mask.shape[0] if mask is not None else 1, NH=p.heads, **geometry,
                scale=float(p.scale), mask_value=float(s.mask_value) if s else 0.0)


def _constexprs(p: Problem, cfg: Config) -> dict:
    """The compile-time parameters shared by the family: sizes, tiles, geometry switches, dtypes."""
    s, dtype = p.shift, p.q.dtype
    return dict(N=p.n, WH=p.window[0], WW=p.window[1], D=p.d, DV=p.dv, D_PAD=cfg.d_pad, DV_PAD=cfg.dv_pad,
                SHIFTED=s is not None, PAD_THEN_ROLL=bool(s and s.pad_then_roll),
                SHIFT_H=bool(s and s.sh > 0), SHIFT_W=bool(s and s.sw > 0), HAS_TABLE=p.table is not None,
                MASKED=p.mask is not None or bool(s and (s.sh > 0 or s.sw > 0)),
                HAS_QKV_BIAS=p.has_padding_tokens, IN_DT=tu.tl_dtype(dtype), DOT_DT=tu.dot_dtype(dtype),
                PREC=tu.dot_precision(dtype), num_stages=cfg.stages)


def attention_forward(p: Problem, out: Tensor, stats: Optional[tuple[Tensor, Tensor, Tensor]] = None) -> Tensor:
    """Write the attention output into ``out`` (or, with ``stats=(grad, lse, delta)``, the row statistics)."""
    if p.n_windows == 0 or out.numel() == 0:
        return out
    cfg = config(p.n, p.d, p.dv, p.n_windows, p.heads, p.q.dtype)
    grad, lse, delta = stats if stats is not None else (out, out, out)  # unused pointers without STATS
    o = grad if stats is not None else out  # with STATS, O's strides address dO
    grid = (-(-p.n_windows // cfg.wpp), cfg.num_mb, p.heads)
    with tu.device_guard(out):
        _fwd_kernel[grid](O=o, DO=grad, LSE=lse, DELTA=delta, **_strides("so", o), wpp=cfg.wpp, **_common(p),
                          BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, STATS=stats is not None,
                          ONE_KB=p.n <= cfg.block_n, num_warps=cfg.fwd_warps, **_constexprs(p, cfg))
    return out


def attention_backward(p: Problem, grad: Tensor, dq: Tensor, dk: Tensor, dv: Tensor
                       ) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Write dq, dk, dv (addressed like q, k, v) and return (d bias_table or None, d qkv_bias or None).

    Deterministic: every gradient element is written by exactly one program, and the two cross-window sums
    (bias table, qkv_bias) go through per-program partial buffers reduced on the host in a fixed order."""
    dtype, device = p.q.dtype, p.q.device
    if p.n_windows == 0 or grad.numel() == 0:
        for t in (dq, dk, dv):
            t.zero_()
        dtable = torch.zeros_like(p.table) if p.table is not None else None
        return dtable, (torch.zeros_like(p.qkv_bias) if p.qkv_bias is not None else None)
    cfg = config(p.n, p.d, p.dv, p.n_windows, p.heads, dtype)
    lse = torch.empty(p.n_windows, p.heads, p.n, dtype=torch.float32, device=device)
    delta = torch.empty_like(lse)
    attention_forward(p, grad, stats=(grad, lse, delta))  # recompute the softmax statistics

    groups = -(-p.n_windows // cfg.wpp_kv)
    nk_pad = cfg.num_kb * cfg.block_kv
    pt = (torch.empty(groups, p.heads, cfg.block_q, nk_pad, dtype=torch.float32, device=device)
          if p.table is not None else lse)
    pb = (torch.empty(cfg.num_kb, groups, 2, p.heads, cfg.d_pad, dtype=torch.float32, device=device)
          if p.has_padding_tokens else lse)
    fuse_dq = p.n <= cfg.block_kv
    common, constexprs = _common(p), _constexprs(p, cfg)
    with tu.device_guard(grad):
        _bwd_kv_kernel[(groups, cfg.num_kb, p.heads)](
            DO=grad, DQ=dq, DK=dk, DVT=dv, LSE=lse, DELTA=delta, PT=pt, PB=pb, **_strides("so", grad),
            **_strides("dq", dq), **_strides("dk", dk), **_strides("dv", dv), wpp=cfg.wpp_kv, n_groups=groups,
            **common, BLOCK_Q=cfg.block_q, BLOCK_N=cfg.block_kv, NK_PAD=nk_pad, FUSE_DQ=fuse_dq,
            num_warps=cfg.kv_warps, **constexprs)
        if not fuse_dq:
            _bwd_q_kernel[(-(-p.n_windows // cfg.wpp), cfg.num_mb, p.heads)](
                DO=grad, DQ=dq, LSE=lse, DELTA=delta, **_strides("so", grad), **_strides("dq", dq), wpp=cfg.wpp,
                **common, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.fwd_warps, **constexprs)

    dtable = None
    if p.table is not None:
        summed = pt.sum(0).reshape(p.heads, -1)  # fixed-order reduction over the programs' partial sums
        summed = torch.cat([summed, summed.new_zeros(p.heads, 1)], 1)  # the last column is the gather's "nothing"
        index = _table_index(p.window, cfg.block_q, nk_pad, device)
        dtable = summed[:, index].sum(-1).t().to(dtype).contiguous()
    dbias = None
    if p.has_padding_tokens:
        dkv = pb.sum((0, 1))[..., :p.d]  # (2, nH, d)
        dbias = torch.cat([torch.zeros_like(dkv[:1]), dkv]).reshape(-1).to(dtype)  # padded queries get no grad
    elif p.qkv_bias is not None:
        dbias = torch.zeros_like(p.qkv_bias)  # no padding token: qkv_bias does not enter the output
    return dtable, dbias


@functools.lru_cache(maxsize=64)
def _table_index(window: tuple[int, int], block_q: int, nk_pad: int, device: torch.device) -> Tensor:
    """(T, N) flat positions i·nk_pad + j of the (i, j) pairs with idx(i, j) = t, padded with the sentinel
    block_q·nk_pad; summing a gather through it folds an (N, N) score-gradient sum into the bias table."""
    n = window[0] * window[1]
    rel = relative_position_index(window).flatten()
    flat = torch.arange(n).repeat_interleave(n) * nk_pad + torch.arange(n).repeat(n)
    t = (2 * window[0] - 1) * (2 * window[1] - 1)
    counts = torch.bincount(rel, minlength=t)
    order = torch.argsort(rel, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n * n) - starts[rel[order]]
    index = torch.full((t, int(counts.max())), block_q * nk_pad, dtype=torch.long)
    index[rel[order], rank] = flat[order]
    return index.to(device)


def check(t: Tensor, name: str, n: int, d: int, dv: int) -> Optional[str]:
    """Every reason these sizes or tensor ``name`` cannot run on the Triton kernels, or None."""
    return reasons(tu.triton_available(), tu.device_ok(t, name), tu.dtype_ok(t, name),
                   n > MAX_TOKENS and f"windows of N={n} tokens are larger than the Triton kernels' limit of "
                                     f"{MAX_TOKENS}",
                   max(d, dv) > MAX_HEAD_DIM and f"head dim {max(d, dv)} is larger than the Triton kernels' limit "
                                                 f"of {MAX_HEAD_DIM}")
