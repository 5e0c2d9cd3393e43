"""Triton backend of ``semantic_attention``: out = softmax(s·kᵀ)·v, one head, no scaling, forward and backward.

s, k (B, H, W, K) and v (B, H, W, C) are read in place through their strides. A *window* is a set of N tokens:

- windowed (``window_size=(Mh, Mw)``): window w of image b covers the padded-grid cells of the w-th Mh×Mw block
  (row-major, as ``window_partition``); token t sits at (y, x) = (block row·Mh + t // Mw, block col·Mw + t % Mw)
  and is *padding* when y >= H or x >= W. Padding keys/values read ``pad_k`` / ``pad_v`` (zeros if None);
  padding queries are cropped away by the reference, so they are never computed. No padded copies exist.
- global (``window_size=None``): one window of all N = H·W tokens per image (the same arithmetic with Mh = H,
  Mw = W), computed flash-style: nothing of size N×N is ever stored.

K is padded to a power-of-two tile (masked loads), C is tiled by BLOCK_C. Scores are fp32, and so are the
running row max m and sum l of the online softmax. The logits are unscaled class scores and can be large, so
every exponent is formed as exp(s − m) (subtract first: the rounding error scales with s − m, not with |s|),
and the backward rebuilds P = exp(s − m) / l from the saved (m, l) rather than from one rounded lse. The
probabilities are rounded to the input dtype for the P·V product, as FlashAttention does.

Kernels (grid axis 0 is the window, so any batch fits):

- ``_fwd_kernel`` (window, query block, C tile): online softmax over key blocks, acc (BLOCK_M, BLOCK_C).
  Every C tile recomputes the scores of its query block (cheaper than holding a (BLOCK_M, C) accumulator for
  C up to 1536). With ``STATS`` it stores the row statistics (m, l) and, per C tile, the partial
  D = rowsum(dO∘O) instead of O: the op saves only the inputs, so the backward recomputes these (one forward's
  work) and sums the D partials over C tiles on the host in a fixed order.
- ``_bwd_kv_kernel`` (window, key block, C tile): loops over all query blocks recomputing P from the saved (m, l);
  dV of its C tile accumulates over query blocks; the C-tile-0 programs also accumulate dK (dP = dO·vᵀ summed
  over every C tile in an inner loop; dS = P∘(dP − D)). Each key token's dK/dV is complete when stored: no
  atomics. The rows of *padding* key tokens are summed into per-program partials (d pad_k, d pad_v), reduced
  on the host in a fixed order.
- ``_bwd_q_kernel`` (window, query block): ds = Σ_keys dS·k, recomputing P and dP tile by tile.

All of it is bitwise repeatable: every output element is written by one program, and the only cross-program
sums (D over C tiles, pad gradients) are fixed-shape torch reductions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ... import _triton_utils as tu
from ...backends import reasons
from .._windows import padded_size

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ()

tl = tu.language()
MAX_CLASSES = 256  # K is one register tile


# ----------------------------------------------------------------------------------------------- device helpers

@tu.jit
def _tokens(w, t, H, W, NWIN, NWC, MH, MW):
    """(image, y, x, is_padding) of window-local tokens ``t`` of window ``w``."""
    b = w // NWIN
    win = w % NWIN
    y = (win // NWC) * MH + t // MW
    x = (win % NWC) * MW + t % MW
    return b, y, x, (y >= H) | (x >= W)


@tu.jit
def _load(P, PADV, sp, b, y, x, pad, ok, s0, s1, s2, s3, cols, DIM, HAS_PADV: tl.constexpr):
    """(rows, cols) tile of a (B, H, W, DIM) map; padding tokens read the vector PADV (zeros without it)."""
    off = tl.cast(b, tl.int64) * s0 + y.to(tl.int64) * s1 + x.to(tl.int64) * s2
    cm = cols < DIM
    val = tl.load(P + off[:, None] + (cols.to(tl.int64) * s3)[None, :],
                  mask=(ok & (pad == 0))[:, None] & cm[None, :], other=0.0)
    if HAS_PADV:
        pv = tl.load(PADV + cols * sp, mask=cm, other=0.0)
        val = tl.where((ok & pad)[:, None], pv[None, :], val)
    return val


@tu.jit
def _store(P, b, y, x, ok, s0, s1, s2, s3, cols, DIM, value):
    off = tl.cast(b, tl.int64) * s0 + y.to(tl.int64) * s1 + x.to(tl.int64) * s2
    tl.store(P + off[:, None] + (cols.to(tl.int64) * s3)[None, :], value.to(P.dtype.element_ty),
             mask=ok[:, None] & (cols < DIM)[None, :])


@tu.jit
def _dot(a, b, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    return tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PREC)


@tu.jit
def _probs(s, STAT, n_rows, rid, row_ok, col_ok):
    """P = exp(s - m) / l from the saved row max m and sum l (not from one lse: with large scores the
    rounding of an lse would be |s|-relative), 0 outside the valid (query, key) pairs."""
    m = tl.load(STAT + rid, mask=row_ok, other=0.0)
    inv_l = 1.0 / tl.load(STAT + n_rows + rid, mask=row_ok, other=1.0)
    return tl.where(row_ok[:, None] & col_ok[None, :], tl.exp(s - m[:, None]) * inv_l[:, None], 0.0)


# ------------------------------------------------------------------------------------------------------ kernels

@tu.jit
def _fwd_kernel(S, KK, V, O, PK, PV, DO, STAT, DPART,
                ss0, ss1, ss2, ss3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, so0, so1, so2, so3,
                sd0, sd1, sd2, sd3, spk, spv,
                N, H, W, NWIN, NWC, MH, MW, KD, C, n_rows,
                K_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                HAS_PK: tl.constexpr, HAS_PV: tl.constexpr, STATS: tl.constexpr,
                IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    w = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    cb = tl.program_id(2)
    b, y, x, pad = _tokens(w, rows, H, W, NWIN, NWC, MH, MW)
    row_ok = (rows < N) & (pad == 0)  # padding queries are cropped away: never computed
    ck = tl.arange(0, K_PAD)
    cc = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    q = _load(S, S, 0, b, y, x, pad, row_ok, ss0, ss1, ss2, ss3, ck, KD, False)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_C], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        bc, yc, xc, padc = _tokens(w, cols, H, W, NWIN, NWC, MH, MW)
        k = _load(KK, PK, spk, bc, yc, xc, padc, col_ok, sk0, sk1, sk2, sk3, ck, KD, HAS_PK)
        v = _load(V, PV, spv, bc, yc, xc, padc, col_ok, sv0, sv1, sv2, sv3, cc, C, HAS_PV)
        s = tl.where(col_ok[None, :], _dot(q, tl.trans(k), DOT_DT, PREC), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite from the first block on: key 0 always exists
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])  # subtract first: the error scales with s - m, not with |s|
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(IN_DT), v, DOT_DT, PREC)
        m_i = m_new
    o = acc / l_i[:, None]
    if STATS:
        rid = tl.cast(w, tl.int64) * N + rows
        tl.store(STAT + rid, m_i, mask=row_ok & (cb == 0))
        tl.store(STAT + n_rows + rid, l_i, mask=row_ok & (cb == 0))
        do = _load(DO, DO, 0, b, y, x, pad, row_ok, sd0, sd1, sd2, sd3, cc, C, False).to(tl.float32)
        tl.store(DPART + tl.cast(cb, tl.int64) * n_rows + rid, tl.sum(o * do, 1), mask=row_ok)
    else:
        _store(O, b, y, x, row_ok, so0, so1, so2, so3, cc, C, o)


@tu.jit
def _bwd_kv_kernel(S, KK, V, DO, DK, DV, PK, PV, STAT, DELTA, GPK, GPV,
                   ss0, ss1, ss2, ss3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, sd0, sd1, sd2, sd3,
                   sdk0, sdk1, sdk2, sdk3, sdv0, sdv1, sdv2, sdv3, spk, spv,
                   N, H, W, NWIN, NWC, MH, MW, KD, C, n_rows, c_off, num_kb,
                   K_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   HAS_PK: tl.constexpr, HAS_PV: tl.constexpr, DO_DK: tl.constexpr,
                   PAD_GK: tl.constexpr, PAD_GV: tl.constexpr,
                   IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    w = tl.program_id(0)
    kb = tl.program_id(1)
    cb = tl.program_id(2) + c_off
    cols = kb * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    bc, yc, xc, padc = _tokens(w, cols, H, W, NWIN, NWC, MH, MW)
    ck = tl.arange(0, K_PAD)
    cc = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    k = _load(KK, PK, spk, bc, yc, xc, padc, col_ok, sk0, sk1, sk2, sk3, ck, KD, HAS_PK)
    dv = tl.zeros([BLOCK_N, BLOCK_C], tl.float32)
    dk = tl.zeros([BLOCK_N, K_PAD], tl.float32)
    for m0 in range(0, N, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        b, y, x, pad = _tokens(w, rows, H, W, NWIN, NWC, MH, MW)
        row_ok = (rows < N) & (pad == 0)
        rid = tl.cast(w, tl.int64) * N + rows
        q = _load(S, S, 0, b, y, x, pad, row_ok, ss0, ss1, ss2, ss3, ck, KD, False)
        p = _probs(_dot(q, tl.trans(k), DOT_DT, PREC), STAT, n_rows, rid, row_ok, col_ok)
        do = _load(DO, DO, 0, b, y, x, pad, row_ok, sd0, sd1, sd2, sd3, cc, C, False)
        dv += _dot(tl.trans(p.to(IN_DT)), do, DOT_DT, PREC)
        if DO_DK:
            delta = tl.load(DELTA + rid, mask=row_ok, other=0.0)
            dp = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            for c0 in range(0, C, BLOCK_C):
                c2 = c0 + tl.arange(0, BLOCK_C)
                do2 = _load(DO, DO, 0, b, y, x, pad, row_ok, sd0, sd1, sd2, sd3, c2, C, False)
                v2 = _load(V, PV, spv, bc, yc, xc, padc, col_ok, sv0, sv1, sv2, sv3, c2, C, HAS_PV)
                dp += _dot(do2, tl.trans(v2), DOT_DT, PREC)
            ds = p * (dp - delta[:, None])
            dk += _dot(tl.trans(ds.to(IN_DT)), q, DOT_DT, PREC)
    real = col_ok & (padc == 0)
    padding = col_ok & padc
    part = tl.cast(w, tl.int64) * num_kb + kb
    _store(DV, bc, yc, xc, real, sdv0, sdv1, sdv2, sdv3, cc, C, dv)
    if PAD_GV:
        tl.store(GPV + part * C + cc, tl.sum(tl.where(padding[:, None], dv, 0.0), 0), mask=cc < C)
    if DO_DK:
        _store(DK, bc, yc, xc, real, sdk0, sdk1, sdk2, sdk3, ck, KD, dk)
        if PAD_GK:
            tl.store(GPK + part * KD + ck, tl.sum(tl.where(padding[:, None], dk, 0.0), 0), mask=ck < KD)


@tu.jit
def _bwd_q_kernel(S, KK, V, DO, DS, PK, PV, STAT, DELTA,
                  ss0, ss1, ss2, ss3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3, sd0, sd1, sd2, sd3,
                  sds0, sds1, sds2, sds3, spk, spv,
                  N, H, W, NWIN, NWC, MH, MW, KD, C, n_rows,
                  K_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                  HAS_PK: tl.constexpr, HAS_PV: tl.constexpr,
                  IN_DT: tl.constexpr, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    w = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    b, y, x, pad = _tokens(w, rows, H, W, NWIN, NWC, MH, MW)
    row_ok = (rows < N) & (pad == 0)
    rid = tl.cast(w, tl.int64) * N + rows
    ck = tl.arange(0, K_PAD)
    q = _load(S, S, 0, b, y, x, pad, row_ok, ss0, ss1, ss2, ss3, ck, KD, False)
    delta = tl.load(DELTA + rid, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, K_PAD], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        bc, yc, xc, padc = _tokens(w, cols, H, W, NWIN, NWC, MH, MW)
        k = _load(KK, PK, spk, bc, yc, xc, padc, col_ok, sk0, sk1, sk2, sk3, ck, KD, HAS_PK)
        p = _probs(_dot(q, tl.trans(k), DOT_DT, PREC), STAT, n_rows, rid, row_ok, col_ok)
        dp = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c2 = c0 + tl.arange(0, BLOCK_C)
            do2 = _load(DO, DO, 0, b, y, x, pad, row_ok, sd0, sd1, sd2, sd3, c2, C, False)
            v2 = _load(V, PV, spv, bc, yc, xc, padc, col_ok, sv0, sv1, sv2, sv3, c2, C, HAS_PV)
            dp += _dot(do2, tl.trans(v2), DOT_DT, PREC)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(IN_DT), k, DOT_DT, PREC)
    _store(DS, b, y, x, row_ok, sds0, sds1, sds2, sds3, ck, KD, dq)


# ------------------------------------------------------------------------------------------------------- host side

@dataclass(frozen=True)
class Config:
    k_pad: int
    block_c: int
    num_c: int
    fwd_m: int
    fwd_n: int
    fwd_warps: int
    kv_m: int
    kv_n: int
    kv_warps: int
    q_m: int
    q_n: int
    q_warps: int


def _block_c(kd_pad: int, c: int) -> int:
    """C tile: each tile recomputes the (K_PAD-deep) scores, so weigh that against the padded P·V columns."""
    def cost(bc):
        n = -(-c // bc)
        return n * kd_pad + n * bc
    return min((32, 64, 128), key=lambda bc: (cost(bc), -bc))


def config(n: int, kd: int, c: int, dtype: torch.dtype) -> Config:
    """Launch configuration by rule (no autotuning, no device query), cached per shape and dtype."""
    def rule() -> Config:
        k_pad = tu.next_pow2(kd, 16)
        n_pad = tu.next_pow2(n, 16)
        bc = _block_c(k_pad, c)
        wide = k_pad >= 256  # (BLOCK, K_PAD) fp32 accumulators: halve the block
        fwd_m, fwd_n = min(64, n_pad), min(32 if wide else 64, n_pad)
        # 4-byte inputs at K_PAD 256: 64 pipelined query rows need 238,592 B of shared memory in the dK/dV kernel,
        # over sm_90's 232,448 B per block; 32 rows need 148,480 B (offline sm_90 builds)
        kv_m = min(32 if wide and dtype.itemsize == 4 else 64, n_pad)
        kv_n = min(32 if wide else 64, n_pad)
        q_m, q_n = min(32 if wide else 64, n_pad), min(64, n_pad)

        def warps(m, width):
            return 4 if m * width <= 4096 else 8
        return Config(k_pad=k_pad, block_c=bc, num_c=-(-c // bc), fwd_m=fwd_m, fwd_n=fwd_n,
                      fwd_warps=warps(fwd_m, max(k_pad, bc)), kv_m=kv_m, kv_n=kv_n,
                      kv_warps=warps(kv_n, max(k_pad, bc)), q_m=q_m, q_n=q_n, q_warps=warps(q_m, k_pad))
    return tu.cached_config(("semantic_attention", n, kd, c, dtype), rule)


@dataclass(frozen=True)
class Geometry:
    n: int          # tokens per window
    n_windows: int  # windows over the batch
    nwin: int       # windows per image
    nwc: int        # windows per grid row
    mh: int
    mw: int
    padded: bool    # some window holds padding tokens


def geometry(s: Tensor, window_size) -> Geometry:
    b, h, w, _ = s.shape
    if not window_size:  # global: one window of all H·W tokens per image
        return Geometry(h * w, b, 1, 1, h, w, False)
    mh, mw = int(window_size[0]), int(window_size[1])
    hp, wp = padded_size(h, mh), padded_size(w, mw)
    nwc = wp // mw
    nwin = (hp // mh) * nwc
    return Geometry(mh * mw, b * nwin, nwin, nwc, mh, mw, hp != h or wp != w)


def _args(s: Tensor, g: Geometry) -> list:
    return [g.n, s.shape[1], s.shape[2], g.nwin, g.nwc, g.mh, g.mw]


def _dtypes(dtype: torch.dtype) -> dict:
    return dict(IN_DT=tu.tl_dtype(dtype), DOT_DT=tu.dot_dtype(dtype), PREC=tu.dot_precision(dtype))


def _pads(s, pad_k, pad_v) -> list:
    return [pad_k if pad_k is not None else s, pad_v if pad_v is not None else s,
            pad_k.stride(0) if pad_k is not None else 0, pad_v.stride(0) if pad_v is not None else 0]


def _forward(s, k, v, window_size, pad_k, pad_v, out, stats=None):
    """Write ``out`` (B, H, W, C), or with ``stats=(grad, stat, dpart)`` the row statistics."""
    g = geometry(s, window_size)
    kd, c = s.shape[-1], v.shape[-1]
    cfg = config(g.n, kd, c, s.dtype)
    pk, pv, spk, spv = _pads(s, pad_k, pad_v)
    grad, stat, dpart = stats if stats is not None else (out, out, out)
    o = grad if stats is not None else out
    grid = (g.n_windows, -(-g.n // cfg.fwd_m), cfg.num_c)
    _fwd_kernel[grid](s, k, v, out, pk, pv, grad, stat, dpart, *s.stride(), *k.stride(), *v.stride(),
                      *o.stride(), *grad.stride(), spk, spv, *_args(s, g), kd, c, g.n_windows * g.n,
                      K_PAD=cfg.k_pad, BLOCK_M=cfg.fwd_m, BLOCK_N=cfg.fwd_n, BLOCK_C=cfg.block_c,
                      HAS_PK=pad_k is not None, HAS_PV=pad_v is not None, STATS=stats is not None,
                      num_warps=cfg.fwd_warps, **_dtypes(s.dtype))
    return out


def forward(s: Tensor, k: Tensor, v: Tensor, window_size, pad_k: Optional[Tensor], pad_v: Optional[Tensor]) -> Tensor:
    """(B, H, W, C) contiguous; same arguments as reference.forward (``window_size`` [] for global)."""
    out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    if out.numel() == 0:
        return out
    return _forward(s, k, v, window_size, pad_k, pad_v, out)


def backward(grad: Tensor, s: Tensor, k: Tensor, v: Tensor, window_size, pad_k: Optional[Tensor],
             pad_v: Optional[Tensor]):
    """(ds, dk, dv, d pad_k or None, d pad_v or None), bitwise repeatable."""
    dtype, device = s.dtype, s.device
    ds, dk, dv = (torch.empty(t.shape, dtype=dtype, device=device) for t in (s, k, v))
    dpk = torch.zeros_like(pad_k) if pad_k is not None else None
    dpv = torch.zeros_like(pad_v) if pad_v is not None else None
    if s.numel() == 0 or dv.numel() == 0:
        for t in (ds, dk, dv):
            t.zero_()
        return ds, dk, dv, dpk, dpv
    g = geometry(s, window_size)
    kd, c = s.shape[-1], v.shape[-1]
    cfg = config(g.n, kd, c, dtype)
    rows = g.n_windows * g.n
    stat = torch.empty(2, rows, dtype=torch.float32, device=device)  # row max and row sum of exp
    dpart = torch.empty(cfg.num_c, rows, dtype=torch.float32, device=device)
    _forward(s, k, v, window_size, pad_k, pad_v, dv, stats=(grad, stat, dpart))
    delta = dpart[0] if cfg.num_c == 1 else dpart.sum(0)  # fixed-order sum over the C tiles

    pk, pv, spk, spv = _pads(s, pad_k, pad_v)
    num_kb = -(-g.n // cfg.kv_n)
    pad_gk = pad_k is not None and g.padded
    pad_gv = pad_v is not None and g.padded
    gpk = torch.empty(g.n_windows * num_kb, kd, dtype=torch.float32, device=device) if pad_gk else stat
    gpv = torch.empty(g.n_windows * num_kb, c, dtype=torch.float32, device=device) if pad_gv else stat
    common = dict(K_PAD=cfg.k_pad, BLOCK_M=cfg.kv_m, BLOCK_N=cfg.kv_n, BLOCK_C=cfg.block_c,
                  HAS_PK=pad_k is not None, HAS_PV=pad_v is not None, PAD_GK=pad_gk, PAD_GV=pad_gv,
                  num_warps=cfg.kv_warps, **_dtypes(dtype))
    kv_args = [s, k, v, grad, dk, dv, pk, pv, stat, delta, gpk, gpv, *s.stride(), *k.stride(), *v.stride(),
               *grad.stride(), *dk.stride(), *dv.stride(), spk, spv, *_args(s, g), kd, c, rows]
    # C tile 0 with dK (the dP loop covers every C tile), then the other C tiles' dV only.
    _bwd_kv_kernel[(g.n_windows, num_kb, 1)](*kv_args, 0, num_kb, DO_DK=True, **common)
    if cfg.num_c > 1:
        _bwd_kv_kernel[(g.n_windows, num_kb, cfg.num_c - 1)](*kv_args, 1, num_kb, DO_DK=False, **common)
    _bwd_q_kernel[(g.n_windows, -(-g.n // cfg.q_m))](
        s, k, v, grad, ds, pk, pv, stat, delta, *s.stride(), *k.stride(), *v.stride(), *grad.stride(),
        *ds.stride(), spk, spv, *_args(s, g), kd, c, rows,
        K_PAD=cfg.k_pad, BLOCK_M=cfg.q_m, BLOCK_N=cfg.q_n, BLOCK_C=cfg.block_c,
        HAS_PK=pad_k is not None, HAS_PV=pad_v is not None, num_warps=cfg.q_warps, **_dtypes(dtype))
    if pad_gk:
        dpk = gpk.sum(0).to(dtype)
    if pad_gv:
        dpv = gpv.sum(0).to(dtype)
    return ds, dk, dv, dpk, dpv


def available() -> Optional[str]:
    """Why the Triton backend cannot run in this process, or None when it can."""
    return tu.triton_available()


def supports(s: Tensor, k: Tensor, v: Tensor, window_size, pad_k: Optional[Tensor],
             pad_v: Optional[Tensor]) -> Optional[str]:
    """Every reason the Triton backend cannot run these arguments (device, dtype, sizes), or None when it can."""
    found = []
    for name, t in (("s", s), ("k", k), ("v", v), ("pad_k", pad_k), ("pad_v", pad_v)):
        found += [tu.device_ok(t, name), tu.dtype_ok(t, name)]
    classes = s.shape[-1]
    found.append(classes > MAX_CLASSES and f"K={classes} classes exceed the Triton kernels' limit of {MAX_CLASSES} "
                                           f"(one register tile)")
    found.append(classes == 0 and "K=0 classes: nothing for the Triton kernels to attend with")
    n = int(window_size[0]) * int(window_size[1]) if window_size else s.shape[1] * s.shape[2]
    found.append(-(-n // 16) > 65535 and f"{'windows of ' if window_size else ''}{n} tokens exceed the Triton "
                                         f"grid limit")
    return reasons(*found)
