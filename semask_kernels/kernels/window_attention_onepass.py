"""Window-attention Triton kernels for windows that fit one tile (N <= 64 tokens: every 7x7 window), in the
shifted geometry of ``shifted_window_attention`` (q, k, v read straight from qkv, see ``window_attention.py``):
the ``triton.onepass`` variant, beside the verified kernels of ``window_attention.py``.

- ``_onepass_bwd_kernel``: the whole backward of a (window, head) in one pass. The window's scores fit one
  (BLOCK, BLOCK) tile, so the row statistics are recomputed in registers (row max and sum of the exact softmax),
  delta = rowsum(dO·O) is taken inside the kernel as rowsum(P·dP) (the same sum, since O = P·V, without forming
  O: five MMAs per window and head, not six), and dq, dk, dv are written once each: no statistics pass, no
  second launch over the activations. The gradient of the scores summed over the
  program's windows stays in registers and is written once per program.
- ``_table_bins_kernel``: those per-program partial sums folded into the (2Wh-1)(2Ww-1) bins of the bias table,
  each bin a sum over the programs in order and over its (i, j) pairs through a cached index: a fixed order,
  no float atomics, so d bias_table is bitwise repeatable.
- ``_allheads_fwd_kernel``: the forward with all heads of a window in one program. A program walks a run of
  (window, head) pairs window-major, so the heads of one window follow each other and together read the
  window's whole qkv rows; the loop is software-pipelined (``num_stages`` >= 2: the next pair's tiles load while
  this one computes). Tile settings come from a small table keyed by (window tokens, head dim, heads)
  (``window_attention_onepass.json``, chosen by ``python -m benchmarks sweep-swa``), else by rule. On a map
  with padding tokens and a qkv bias it is two launches: every window as if it had none (the pipelined build;
  padding tokens read zeros), then only the windows that hold padding tokens (``padded_windows``), one
  (window, head) per program, reading qkv_bias for them and overwriting those windows' tokens. Reading the
  bias through selected pointers inside the pipelined loop took 203-235 registers on sm_90; both builds now
  stay within the 168 of three programs per SM.

Windows larger than one tile (12x12 and up) run ``window_attention_lse.py``: a forward that saves the row
log-sum-exp and a backward that starts from it. Launch arguments other than the tensors are built once per
geometry and cached (``_launch_args``).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from .. import _triton_utils as tu
from ..ops._windows import relative_position_index
from . import window_attention as wa
from .window_attention_tiles import _bias_tile, _dot, _geometry, _mask_tile, _offsets, _store_tokens

tl = tu.language()
LOG2E = tl.constexpr(1.4426950408889634) if tu.triton is not None else 1.4426950408889634
ONE_TILE = 64  # the largest padded window (tokens) whose (BLOCK, BLOCK) score tile a program keeps in registers
TABLE_FILE = Path(__file__).with_suffix(".json")
# One warp group: the backward needs ~150 registers shifted, ~255 unshifted (sm_90, triton 3.8), so two programs
# fit an SM (2 x 128 threads x 255 <= 65536); 8 warps did not bring it under the 128 that two 8-warp programs need.
BWD_WARPS = 4


# ------------------------------------------------------------------------------------------------------ kernels

@tu.jit
def _load_rows(P, PB, off, pad, ok, h, cols, DIM: tl.constexpr, s3, HAS_PB: tl.constexpr):
    """(rows, DIM_PAD) tile of tokens; padding tokens read the bias vector PB[h·DIM + c] (zeros without it).
    One load through selected pointers (not a load and a select), so the software pipeline can stage it."""
    cmask = cols < DIM
    ptrs = P + off[:, None] + cols[None, :] * s3
    if HAS_PB:
        ptrs = tl.where(pad[:, None], PB + h * DIM + cols[None, :], ptrs)
        return tl.load(ptrs, mask=ok[:, None] & cmask[None, :], other=0.0)
    return tl.load(ptrs, mask=(ok & (pad == 0))[:, None] & cmask[None, :], other=0.0)


@tu.jit
def _allheads_fwd_kernel(QKV, QKVB, O, TABLE, WIN,
                         s0, s1, s2, s3, so0, so1, so2, so3, st0, st1,
                         n_pairs, ppp, NH, C, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                         N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr,
                         D_PAD: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr,
                         PAD_THEN_ROLL: tl.constexpr, SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr,
                         HAS_QKV_BIAS: tl.constexpr, LISTED: tl.constexpr, IN_DT: tl.constexpr,
                         DOT_DT: tl.constexpr, PREC: tl.constexpr):
    g = tl.program_id(0)
    t = tl.arange(0, BLOCK)
    ok = t < N
    cd = tl.arange(0, D_PAD)
    qk_scale = scale * LOG2E
    start = g * ppp
    for it in tl.range(start, tl.minimum(start + ppp, n_pairs), num_stages=STAGES):
        if LISTED:  # the windows that hold padding tokens, from the list WIN
            w = tl.load(WIN + it // NH)
        else:
            w = it // NH  # window-major: the heads of one window are consecutive iterations
        h = it % NH
        b, y, x, pad, ph, pw = _geometry(w, t, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True, PAD_THEN_ROLL)
        off = _offsets(b, y, x, h, D, s0, s1, s2, s3, True)
        q = _load_rows(QKV, QKVB, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        k = _load_rows(QKV + C * s3, QKVB + C, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        v = _load_rows(QKV + 2 * C * s3, QKVB + 2 * C, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale
        # the bias tile's (BLOCK, BLOCK) index math must not be hoisted out of the loop (a live int tile costs
        # 46 registers on sm_90 once the loop runs more than once, 214 -> 168): rows offset by a runtime zero
        s += _bias_tile(TABLE, st0, st1, h, t + (h >= NH).to(tl.int32), t, N, WH, WW) * LOG2E
        if SHIFT_H or SHIFT_W:
            s += _mask_tile(TABLE, 0, 0, 0, 1, w, t, t, ph, pw, ph, pw, HP, WP, SH, SW, mask_value, N, WH, WW,
                            True, SHIFT_H, SHIFT_W) * LOG2E
        s = tl.where(ok[None, :], s, float("-inf"))
        m = tl.max(s, 1)
        p = tl.exp2(s - m[:, None])
        o = _dot(p.to(IN_DT), v, DOT_DT, PREC) / tl.sum(p, 1)[:, None]
        _store_tokens(O, _offsets(b, y, x, h, D, so0, so1, so2, so3, True), pad, ok, cd, D, so3, o)


@tu.jit
def _onepass_bwd_kernel(QKV, QKVB, DO, DQKV, TABLE, PT, PB,
                        s0, s1, s2, s3, so0, so1, so2, so3, dq0, dq1, dq2, dq3, st0, st1,
                        n_windows, wpp, NH, C, NWIN, NWC, H, W, HP, WP, SH, SW, scale, mask_value,
                        N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, D: tl.constexpr,
                        D_PAD: tl.constexpr, BLOCK: tl.constexpr,
                        PAD_THEN_ROLL: tl.constexpr, SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr,
                        HAS_QKV_BIAS: tl.constexpr, IN_DT: tl.constexpr, DOT_DT: tl.constexpr,
                        PREC: tl.constexpr):
    g = tl.program_id(0)
    h = tl.program_id(1)
    t = tl.arange(0, BLOCK)  # every token of the window, as query rows and as key columns
    ok = t < N
    cd = tl.arange(0, D_PAD)
    qk_scale = scale * LOG2E
    # the head's bias tile serves every window (reloading it per window costs more registers on sm_90, not fewer)
    # keys past N get -inf here, in the one loop-invariant tile (a second one would cost 32 more registers)
    bias0 = tl.where(ok[None, :], _bias_tile(TABLE, st0, st1, h, t, t, N, WH, WW) * LOG2E, float("-inf"))
    dtable = tl.zeros([BLOCK, BLOCK], tl.float32)
    if HAS_QKV_BIAS:
        dkb = tl.zeros([D_PAD], tl.float32)
        dvb = tl.zeros([D_PAD], tl.float32)
    w_start = g * wpp
    for w in range(w_start, tl.minimum(w_start + wpp, n_windows)):
        b, y, x, pad, ph, pw = _geometry(w, t, NWIN, NWC, H, W, HP, WP, SH, SW, WH, WW, True, PAD_THEN_ROLL)
        off = _offsets(b, y, x, h, D, s0, s1, s2, s3, True)
        q = _load_rows(QKV, QKVB, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        k = _load_rows(QKV + C * s3, QKVB + C, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        v = _load_rows(QKV + 2 * C * s3, QKVB + 2 * C, off, pad, ok, h, cd, D, s3, HAS_QKV_BIAS)
        do = _load_rows(DO, DO, _offsets(b, y, x, h, D, so0, so1, so2, so3, True), pad, ok, h, cd, D, so3,
                          False)
        s = _dot(q, tl.trans(k), DOT_DT, PREC) * qk_scale + bias0
        if SHIFT_H or SHIFT_W:
            s += _mask_tile(TABLE, 0, 0, 0, 1, w, t, t, ph, pw, ph, pw, HP, WP, SH, SW, mask_value, N, WH, WW,
                            True, SHIFT_H, SHIFT_W) * LOG2E
        m = tl.max(s, 1)  # the row statistics, exact: the whole row is in this tile
        p = tl.exp2(s - m[:, None])
        # rows past N keep their (finite) p: their dO rows are zero, so every gradient they touch gets zeros
        p = p * (1.0 / tl.sum(p, 1))[:, None]
        dv = _dot(tl.trans(p.to(IN_DT)), do, DOT_DT, PREC)
        dp = _dot(do, tl.trans(v), DOT_DT, PREC)
        # delta = rowsum(dO·O) = rowsum(P·dP) (O = P·V): taken from the tiles in registers, no O needed
        delta = tl.sum(p * dp, 1)
        ds = p * (dp - delta[:, None])  # d loss / d score (score = scale·q·k + bias + mask)
        dk = _dot(tl.trans(ds.to(IN_DT)), q, DOT_DT, PREC) * scale
        dq = _dot(ds.to(IN_DT), k, DOT_DT, PREC) * scale
        offd = _offsets(b, y, x, h, D, dq0, dq1, dq2, dq3, True)
        _store_tokens(DQKV, offd, pad, ok, cd, D, dq3, dq)
        _store_tokens(DQKV + C * dq3, offd, pad, ok, cd, D, dq3, dk)
        _store_tokens(DQKV + 2 * C * dq3, offd, pad, ok, cd, D, dq3, dv)
        if HAS_QKV_BIAS:  # padding keys/values are qkv_bias: their gradients sum into it
            padk = (pad & ok)[:, None]
            dkb += tl.sum(tl.where(padk, dk, 0.0), 0)
            dvb += tl.sum(tl.where(padk, dv, 0.0), 0)
        dtable += ds
    pt = PT + ((tl.cast(g, tl.int64) * NH + h) * BLOCK + t[:, None]) * BLOCK + t[None, :]
    tl.store(pt, dtable)
    if HAS_QKV_BIAS:
        pb = PB + ((tl.cast(g, tl.int64) * 2) * NH + h) * D_PAD
        tl.store(pb + cd, dkb)
        tl.store(pb + NH * D_PAD + cd, dvb)


@tu.jit
def _table_bins_kernel(PT, INDEX, OUT, n_groups, NH, T,
                       PLANE: tl.constexpr, MAXC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """OUT[t, h] = sum over programs g (in order) of sum over the pairs (i, j) of bin t of PT[g, h, i, j]."""
    h = tl.program_id(0)
    bins = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.arange(0, BLOCK_C)
    where = (bins < T)[:, None] & (c < MAXC)[None, :]
    idx = tl.load(INDEX + bins[:, None] * MAXC + c[None, :], mask=where, other=-1)
    hit = idx >= 0
    acc = tl.zeros([BLOCK_T], tl.float32)
    for g in range(n_groups):
        plane = PT + (tl.cast(g, tl.int64) * NH + h) * PLANE
        acc += tl.sum(tl.load(plane + idx, mask=hit, other=0.0), 1)
    tl.store(OUT + bins * NH + h, acc, mask=bins < T)


# ------------------------------------------------------------------------------------------------------- host side

@dataclass(frozen=True)
class Tiles:
    """Launch settings of the all-heads forward: warps, pipeline stages, (window, head) pairs per program."""
    num_warps: int
    num_stages: int
    pairs_per_program: int


def read_table(path: Path = TABLE_FILE) -> dict[tuple[int, int, int], Tiles]:
    """The committed tile table: {(window tokens, head dim, heads): Tiles}; empty when the file has no rows."""
    if not path.exists():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {(r["tokens"], r["head_dim"], r["heads"]): Tiles(r["num_warps"], r["num_stages"],
                                                             r["pairs_per_program"]) for r in rows}


TILE_TABLE = read_table()


def tiles(n: int, d: int, heads: int, n_pairs: int) -> Tiles:
    """The table's row for (n, d, heads), else the rule: 4 warps, 2 stages, about 8 waves of programs."""
    found = TILE_TABLE.get((n, d, heads))
    if found is not None:
        return found
    return Tiles(4, 2, max(1, min(64, n_pairs // wa.TARGET_PROGRAMS)))


def fits_one_tile(n: int) -> bool:
    return tu.next_pow2(n, 16) <= ONE_TILE


def _geometry_args(p: wa.Problem) -> dict:
    s = p.shift
    return dict(NH=p.heads, C=p.heads * p.d, NWIN=s.nwin, NWC=s.nwc, H=s.h, W=s.w, HP=s.hp, WP=s.wp, SH=s.sh,
                SW=s.sw, scale=float(p.scale), mask_value=float(s.mask_value), N=p.n, WH=p.window[0],
                WW=p.window[1], D=p.d, D_PAD=tu.next_pow2(p.d, 16), BLOCK=tu.next_pow2(p.n, 16),
                PAD_THEN_ROLL=s.pad_then_roll, SHIFT_H=s.sh > 0, SHIFT_W=s.sw > 0,
                HAS_QKV_BIAS=p.has_padding_tokens, IN_DT=tu.tl_dtype(p.q.dtype), DOT_DT=tu.dot_dtype(p.q.dtype),
                PREC=tu.dot_precision(p.q.dtype))


def _strides(prefix: str, t: Tensor) -> dict:
    return {f"{prefix}{i}": s for i, s in enumerate(t.stride())}


_LAUNCH_ARGS: dict = {}


def _launch_args(kind: str, p: wa.Problem, qkv: Tensor, other: Tensor, out: Optional[Tensor],
                 listed: int = 0) -> tuple:
    """(grid, the non-tensor keyword arguments) of a launch, built once per geometry (shapes, strides, dtype,
    window, shift, pad order, scale) and kept: a call only adds its tensors. ``listed``: the number of padded
    windows of a "forward-padded" launch."""
    s = p.shift
    key = (kind, qkv.shape, qkv.stride(), other.stride(), out.stride() if out is not None else None,
           p.table.stride(), qkv.dtype, p.heads, p.window, s, p.scale, p.has_padding_tokens, listed)
    found = _LAUNCH_ARGS.get(key)
    if found is not None:
        return found
    args = dict(**_geometry_args(p), **_strides("s", qkv), st0=p.table.stride(0), st1=p.table.stride(1))
    if kind == "forward":  # every window, padding tokens read as zeros (the padded ones are redone below)
        n_pairs = p.n_windows * p.heads
        cfg = tiles(p.n, p.d, p.heads, n_pairs)
        args.update(**_strides("so", other), n_pairs=n_pairs, ppp=cfg.pairs_per_program, STAGES=cfg.num_stages,
                    num_warps=cfg.num_warps, num_stages=cfg.num_stages, HAS_QKV_BIAS=False, LISTED=False)
        grid = (-(-n_pairs // cfg.pairs_per_program),)
    elif kind == "forward-padded":  # the listed windows with qkv_bias: one (window, head) per program, so the
        # build has no loop (ppp == 1 is specialized) and no pipeline to feed: within the register budget
        n_pairs = listed * p.heads
        args.update(**_strides("so", other), n_pairs=n_pairs, ppp=1, STAGES=1, num_warps=4, num_stages=1,
                    LISTED=True)
        grid = (n_pairs,)
    else:
        wpp = max(1, min(16, p.n_windows * p.heads // wa.TARGET_PROGRAMS))
        args.update(**_strides("so", other), **_strides("dq", out), n_windows=p.n_windows, wpp=wpp,
                    num_warps=BWD_WARPS, num_stages=1)
        grid = (-(-p.n_windows // wpp), p.heads)
    found = _LAUNCH_ARGS[key] = (grid, args)
    return found


def _bias_pointers(p: wa.Problem, qkv: Tensor) -> Tensor:
    return p.qkv_bias if p.qkv_bias is not None else qkv  # never read without padding tokens and a bias


def forward(p: wa.Problem, qkv: Tensor, out: Tensor) -> Tensor:
    """Write the attention output (B, H, W, C) into ``out``; windows of up to one tile (larger ones:
    ``window_attention_lse.py``)."""
    if not fits_one_tile(p.n):
        raise ValueError(f"the all-heads forward takes windows of up to {ONE_TILE} tokens, got N={p.n}")
    if p.n_windows == 0 or out.numel() == 0:
        return out
    grid, args = _launch_args("forward", p, qkv, out, None)
    with tu.device_guard(out):
        # every window as if it had no padding token (the pipelined build within the register budget) ...
        _allheads_fwd_kernel[grid](QKV=qkv, QKVB=_bias_pointers(p, qkv), O=out, TABLE=p.table, WIN=out, **args)
        if p.has_padding_tokens:  # ... then the windows that hold some again, with qkv_bias, over their tokens
            windows = padded_windows(p, qkv.device)
            grid, args = _launch_args("forward-padded", p, qkv, out, None, len(windows))
            _allheads_fwd_kernel[grid](QKV=qkv, QKVB=_bias_pointers(p, qkv), O=out, TABLE=p.table, WIN=windows,
                                       **args)
    return out


def _padded_lines(size: int, padded: int, win: int, shift: int, pad_then_roll: bool) -> list[int]:
    """The window indices along one axis whose grid cells include padding (see ``_geometry``)."""
    cells = range(padded)
    pad = ([(c + shift) % padded >= size for c in cells] if pad_then_roll else [c >= size for c in cells])
    return sorted({c // win for c in cells if pad[c]})


_PADDED: dict = {}


def padded_windows(p: wa.Problem, device: torch.device) -> Tensor:
    """int32 (w = image·windows per image + window) of every window that holds a padding token, cached per
    geometry: the second launch of the forward recomputes those windows with qkv_bias."""
    s = p.shift
    key = (p.n_windows, s, p.window, device)
    found = _PADDED.get(key)
    if found is None:
        rows = _padded_lines(s.h, s.hp, p.window[0], s.sh, s.pad_then_roll)
        cols = _padded_lines(s.w, s.wp, p.window[1], s.sw, s.pad_then_roll)
        grid_rows, nwc = s.hp // p.window[0], s.nwc
        per_image = [r * nwc + c for r in range(grid_rows) for c in range(nwc) if r in rows or c in cols]
        images = p.n_windows // s.nwin
        found = _PADDED[key] = torch.tensor([b * s.nwin + w for b in range(images) for w in per_image],
                                            dtype=torch.int32, device=device)
    return found


def backward(p: wa.Problem, qkv: Tensor, grad: Tensor, dqkv: Tensor) -> tuple[Tensor, Optional[Tensor]]:
    """Write dqkv; return (d bias_table, d qkv_bias or None). Bitwise repeatable: every element of dqkv is written
    by one program, the two cross-window sums go through per-program partials reduced in a fixed order."""
    if not fits_one_tile(p.n):
        raise ValueError(f"the one-pass backward takes windows of up to {ONE_TILE} tokens, got N={p.n}")
    if p.n_windows == 0 or grad.numel() == 0:
        dqkv.zero_()
        return torch.zeros_like(p.table), (torch.zeros_like(p.qkv_bias) if p.qkv_bias is not None else None)
    grid, args = _launch_args("backward", p, qkv, grad, dqkv)
    block, d_pad, device = args["BLOCK"], args["D_PAD"], qkv.device
    groups = grid[0]
    pt = torch.empty(groups, p.heads, block, block, dtype=torch.float32, device=device)
    pb = (torch.empty(groups, 2, p.heads, d_pad, dtype=torch.float32, device=device) if p.has_padding_tokens
          else pt)
    with tu.device_guard(grad):
        _onepass_bwd_kernel[grid](QKV=qkv, QKVB=_bias_pointers(p, qkv), DO=grad, DQKV=dqkv, TABLE=p.table, PT=pt,
                                  PB=pb, **args)
        dtable = table_bins(pt, p.window, block)
    dbias = None
    if p.has_padding_tokens:
        dkv = pb.sum(0)[..., :p.d]  # (2, nH, d): fixed-order sum over the programs
        dbias = torch.cat([torch.zeros_like(dkv[:1]), dkv]).reshape(-1).to(qkv.dtype)  # padded queries: no grad
    elif p.qkv_bias is not None:
        dbias = torch.zeros_like(p.qkv_bias)  # no padding token: qkv_bias does not enter the output
    return dtable.to(p.table.dtype), dbias


BLOCK_T = 16


def table_bins(pt: Tensor, window: tuple[int, int], block: int) -> Tensor:
    """(T, nH) fp32: the partial score gradients ``pt`` (programs, nH, rows, block), contiguous, pair (i, j) at
    i·block + j of a plane, folded into the table's T = (2Wh-1)(2Ww-1) bins, in a fixed order (one launch, no
    atomics)."""
    groups, heads = pt.shape[:2]
    assert pt.shape[3] == block and pt.is_contiguous()
    index = bin_index(tuple(window), block, pt.device)
    t, maxc = index.shape
    out = torch.empty(t, heads, dtype=torch.float32, device=pt.device)
    _table_bins_kernel[(heads, -(-t // BLOCK_T))](pt, index, out, groups, heads, t, PLANE=pt.shape[2] * block,
                                                  MAXC=maxc,
                                                  BLOCK_T=BLOCK_T, BLOCK_C=tu.next_pow2(maxc, 16), num_warps=4)
    return out


@functools.lru_cache(maxsize=64)
def bin_index(window: tuple[int, int], block: int, device: torch.device) -> Tensor:
    """(T, max pairs per bin) int32: the flat positions i·block + j of the (i, j) pairs of each bin, in
    row-major order, padded with -1."""
    n = window[0] * window[1]
    rel = relative_position_index(window).flatten()
    flat = torch.arange(n).repeat_interleave(n) * block + torch.arange(n).repeat(n)
    t = (2 * window[0] - 1) * (2 * window[1] - 1)
    counts = torch.bincount(rel, minlength=t)
    order = torch.argsort(rel, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n * n) - starts[rel[order]]
    index = torch.full((t, int(counts.max())), -1, dtype=torch.int32)
    index[rel[order], rank] = flat[order].to(torch.int32)
    return index.to(device)
