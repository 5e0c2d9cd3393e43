"""Triton backend of ``ms_deform_attn``: forward and a deterministic backward, no float atomics.

Layouts (made contiguous here): value (B, S, nH, d), sampling_locations (B, Lq, nH, nL, nP, 2), attention_weights
(B, Lq, nH, nL, nP), out and its gradient (B, Lq, nH·d). A *sample* is one (b, q, h, l, p); its bilinear tap
reads four *corners* of level l, each a row of d channels of value. Coordinates and sums are fp32 whatever the
input dtype; results are stored in the inputs' dtypes. ``padding_mode="zeros"`` only (the reference does the
others): a corner outside the map contributes nothing, to the output or to any gradient. The NaN rule is op.py's:
a sample at a non-finite location is dropped (no output, zero gradients); otherwise its tap is formed first and
then multiplied by its weight.

- ``_fwd_kernel``: one program per (block of BLOCK_Q queries, b·nH + h) loops over levels and points and gathers
  the four corner rows of each sample, out = Σ w·(Σ corner weight·row).
- ``_bwd_query_kernel``, same grid: per sample, the tap again (d attention_weights = <g, tap>), the corner
  differences along x and y (d sampling_locations), and the *key* of each corner for the value gradient: the
  value row it reads, s·nH + h, or S·nH when it lies outside the map (sorted last, never read).
- d value is a gather, not a scatter: the keys of each batch are sorted stably (``torch.sort``; the corners of
  one value row then sit together, in the order of their sample ids), ``torch.searchsorted`` finds each row's
  segment, and ``_bwd_value_kernel`` gives every value row to one program that walks its segment in that fixed
  order, recomputes each corner's coefficient w·corner weight from the sample id and accumulates coefficient·g in
  fp32. Every element of every gradient is written by exactly one program in a fixed order: bitwise repeatable.
  The cost is 16 bytes per corner for the keys, the sorted keys and the permutation (the batch is processed in
  chunks of at most ``CORNERS_PER_CHUNK`` corners to bound it).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ... import _triton_utils as tu
from .levels import level_shapes

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/ops/ms_deform_attn/levels.py",)

tl = tu.language()
CORNERS_PER_CHUNK = 1 << 24  # keys, sorted keys and permutation of at most 16M corners (256 MiB) at a time
INT32_MAX = 2 ** 31 - 1


# ------------------------------------------------------------------------------------------------------ kernels

@tu.jit
def _taps(LOC, sample, q_ok, SHAPES, l, ALIGN: tl.constexpr):
    """Pixel coordinates of a block of samples on level ``l``: the top-left corner (x0, y0) as fp32 integers, the
    fractional parts (lx, ly), the level's (H, W), and the scale d pixel / d location of each axis."""
    lx_ = tl.load(LOC + sample * 2, mask=q_ok, other=0.0).to(tl.float32)
    ly_ = tl.load(LOC + sample * 2 + 1, mask=q_ok, other=0.0).to(tl.float32)
    h = tl.load(SHAPES + 2 * l).to(tl.int32)
    w = tl.load(SHAPES + 2 * l + 1).to(tl.int32)
    if ALIGN:
        sx = (w - 1).to(tl.float32)
        sy = (h - 1).to(tl.float32)
        x = lx_ * sx
        y = ly_ * sy
    else:
        sx = w.to(tl.float32)
        sy = h.to(tl.float32)
        x = lx_ * sx - 0.5
        y = ly_ * sy - 0.5
    x0 = tl.floor(x)
    y0 = tl.floor(y)
    return x0, y0, x - x0, y - y0, h, w, sx, sy


@tu.jit
def _finite(fx, fy):
    """Whether a sample's location is finite: its fractional parts are NaN exactly when a coordinate is NaN or
    ±inf (floor(±inf) = ±inf, and ±inf - ±inf is NaN)."""
    return (fx == fx) & (fy == fy)


@tu.jit
def _corner(x0, y0, dx: tl.constexpr, dy: tl.constexpr, h, w, start, q_ok):
    """Whether corner (x0 + dx, y0 + dy) lies inside the (h, w) map, and its token index s (0 when outside).
    Compared as floats first: a NaN or huge coordinate is outside, never a wrapped integer."""
    xf = x0 + dx
    yf = y0 + dy
    ok = q_ok & (xf >= 0.0) & (xf <= (w - 1).to(tl.float32)) & (yf >= 0.0) & (yf <= (h - 1).to(tl.float32))
    xi = tl.where(ok, xf, 0.0).to(tl.int32)
    yi = tl.where(ok, yf, 0.0).to(tl.int32)
    return ok, start + yi * w + xi


@tu.jit
def _row(V, s, ok, heads_d, cs, c_ok):
    """(BLOCK_Q, BLOCK_D) value rows at tokens ``s`` (zeros where not ``ok``), fp32."""
    ptr = V + (s.to(tl.int64) * heads_d)[:, None] + cs[None, :]
    return tl.load(ptr, mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)


@tu.jit
def _fwd_kernel(OUT, V, LOC, W, SHAPES, STARTS, S, LQ, HEADS,
                D: tl.constexpr, NL: tl.constexpr, NP: tl.constexpr, ALIGN: tl.constexpr,
                BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    qs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = qs < LQ
    cs = tl.arange(0, BLOCK_D)
    c_ok = cs < D
    heads_d = HEADS * D
    vb = V + tl.cast(b, tl.int64) * S * heads_d + h * D  # value[b, 0, h, 0]
    bqh = (tl.cast(b, tl.int64) * LQ + qs) * HEADS + h  # (b, q, h) of each query of the block
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for l in range(NL):
        start = tl.load(STARTS + l).to(tl.int32)
        for p in range(NP):
            sample = bqh * (NL * NP) + l * NP + p
            x0, y0, fx, fy, hh, ww, sx, sy = _taps(LOC, sample, q_ok, SHAPES, l, ALIGN)
            wt = tl.load(W + sample, mask=q_ok, other=0.0).to(tl.float32)
            ok00, s00 = _corner(x0, y0, 0, 0, hh, ww, start, q_ok)
            ok01, s01 = _corner(x0, y0, 1, 0, hh, ww, start, q_ok)
            ok10, s10 = _corner(x0, y0, 0, 1, hh, ww, start, q_ok)
            ok11, s11 = _corner(x0, y0, 1, 1, hh, ww, start, q_ok)
            # the tap first, then its weight (the NaN rule of op.py: w = ±inf gives ±inf·tap, as the reference);
            # an outside corner is dropped, not multiplied by a zero row (0·NaN would be NaN)
            c00 = tl.where(ok00, (1 - fx) * (1 - fy), 0.0)
            c01 = tl.where(ok01, fx * (1 - fy), 0.0)
            c10 = tl.where(ok10, (1 - fx) * fy, 0.0)
            c11 = tl.where(ok11, fx * fy, 0.0)
            tap = c00[:, None] * _row(vb, s00, ok00, heads_d, cs, c_ok)
            tap += c01[:, None] * _row(vb, s01, ok01, heads_d, cs, c_ok)
            tap += c10[:, None] * _row(vb, s10, ok10, heads_d, cs, c_ok)
            tap += c11[:, None] * _row(vb, s11, ok11, heads_d, cs, c_ok)
            # a sample at a non-finite location is dropped whatever its weight
            acc += tl.where(_finite(fx, fy)[:, None], wt[:, None] * tap, 0.0)
    ptr = OUT + (bqh * D)[:, None] + cs[None, :]
    tl.store(ptr, acc.to(OUT.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])


@tu.jit
def _bwd_query_kernel(DLOC, DW, KEYS, G, V, LOC, W, SHAPES, STARTS, S, LQ, HEADS,
                      D: tl.constexpr, NL: tl.constexpr, NP: tl.constexpr, ALIGN: tl.constexpr,
                      BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    qs = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = qs < LQ
    cs = tl.arange(0, BLOCK_D)
    c_ok = cs < D
    heads_d = HEADS * D
    vb = V + tl.cast(b, tl.int64) * S * heads_d + h * D
    bqh = (tl.cast(b, tl.int64) * LQ + qs) * HEADS + h
    g = tl.load(G + (bqh * D)[:, None] + cs[None, :], mask=q_ok[:, None] & c_ok[None, :], other=0.0)
    g = g.to(tl.float32)
    outside = S * HEADS  # the key of a corner outside the map: sorts after every value row
    local = (qs * HEADS + h).to(tl.int64) * (NL * NP)  # the sample id within batch b, at l = p = 0
    for l in range(NL):
        start = tl.load(STARTS + l).to(tl.int32)
        for p in range(NP):
            sample = bqh * (NL * NP) + l * NP + p
            x0, y0, fx, fy, hh, ww, sx, sy = _taps(LOC, sample, q_ok, SHAPES, l, ALIGN)
            wt = tl.load(W + sample, mask=q_ok, other=0.0).to(tl.float32)
            ok00, s00 = _corner(x0, y0, 0, 0, hh, ww, start, q_ok)
            ok01, s01 = _corner(x0, y0, 1, 0, hh, ww, start, q_ok)
            ok10, s10 = _corner(x0, y0, 0, 1, hh, ww, start, q_ok)
            ok11, s11 = _corner(x0, y0, 1, 1, hh, ww, start, q_ok)
            # <g, corner row>: each corner's contribution to every gradient of this sample
            g00 = tl.sum(g * _row(vb, s00, ok00, heads_d, cs, c_ok), axis=1)
            g01 = tl.sum(g * _row(vb, s01, ok01, heads_d, cs, c_ok), axis=1)
            g10 = tl.sum(g * _row(vb, s10, ok10, heads_d, cs, c_ok), axis=1)
            g11 = tl.sum(g * _row(vb, s11, ok11, heads_d, cs, c_ok), axis=1)
            tap = ((1 - fx) * (1 - fy)) * g00 + (fx * (1 - fy)) * g01 + ((1 - fx) * fy) * g10 + (fx * fy) * g11
            dx = (1 - fy) * (g01 - g00) + fy * (g11 - g10)
            dy = (1 - fx) * (g10 - g00) + fx * (g11 - g01)
            taken = _finite(fx, fy)  # a dropped sample (non-finite location) gets zero gradients
            tl.store(DW + sample, tl.where(taken, tap, 0.0).to(DW.dtype.element_ty), mask=q_ok)
            tl.store(DLOC + sample * 2, tl.where(taken, wt * sx * dx, 0.0).to(DLOC.dtype.element_ty), mask=q_ok)
            tl.store(DLOC + sample * 2 + 1, tl.where(taken, wt * sy * dy, 0.0).to(DLOC.dtype.element_ty),
                     mask=q_ok)
            kb = KEYS + tl.cast(b, tl.int64) * LQ * HEADS * (NL * NP * 4) + (local + l * NP + p) * 4
            tl.store(kb, tl.where(ok00, s00 * HEADS + h, outside), mask=q_ok)
            tl.store(kb + 1, tl.where(ok01, s01 * HEADS + h, outside), mask=q_ok)
            tl.store(kb + 2, tl.where(ok10, s10 * HEADS + h, outside), mask=q_ok)
            tl.store(kb + 3, tl.where(ok11, s11 * HEADS + h, outside), mask=q_ok)


@tu.jit
def _bwd_value_kernel(DV, G, LOC, W, SHAPES, PERM, SEG, b0, S, LQ, HEADS,
                      D: tl.constexpr, NL: tl.constexpr, NP: tl.constexpr, ALIGN: tl.constexpr,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    """d value of one row (b, s, h): Σ over the corners that read it, in sorted order, of coefficient·g."""
    row = tl.program_id(0)  # s·nH + h
    bl = tl.program_id(1)  # batch within the chunk
    b = b0 + bl
    cs = tl.arange(0, BLOCK_D)
    c_ok = cs < D
    seg = SEG + tl.cast(bl, tl.int64) * (S * HEADS + 1) + row
    lo = tl.load(seg)
    hi = tl.load(seg + 1)
    perm = PERM + tl.cast(bl, tl.int64) * LQ * HEADS * (NL * NP * 4)
    acc = tl.zeros([BLOCK_D], tl.float32)
    for i in range(lo, hi, BLOCK_C):
        idx = i + tl.arange(0, BLOCK_C)
        m = idx < hi
        cid = tl.load(perm + idx, mask=m, other=0)  # corner id within batch b: ((q·nH + h)·nL·nP + l·nP + p)·4 + k
        k = cid % 4
        local = cid // 4
        l = (local // NP) % NL
        qh = local // (NL * NP)
        sample = tl.cast(b, tl.int64) * LQ * HEADS * (NL * NP) + local
        x0, y0, fx, fy, hh, ww, sx, sy = _taps(LOC, sample, m, SHAPES, l, ALIGN)
        wt = tl.load(W + sample, mask=m, other=0.0).to(tl.float32)
        cx = tl.where((k % 2) == 1, fx, 1 - fx)
        cy = tl.where(k >= 2, fy, 1 - fy)
        coef = tl.where(m, wt * cx * cy, 0.0)
        grow = (tl.cast(b, tl.int64) * LQ * HEADS + qh) * D  # g[b, q, h, :]
        gv = tl.load(G + grow[:, None] + cs[None, :], mask=m[:, None] & c_ok[None, :], other=0.0)
        acc += tl.sum(coef[:, None] * gv.to(tl.float32), axis=0)
    out = DV + (tl.cast(b, tl.int64) * S * HEADS + row) * D + cs
    tl.store(out, acc.to(DV.dtype.element_ty), mask=c_ok)


# ------------------------------------------------------------------------------------------------------- host side

def _blocks(d: int, lq: int) -> tuple[int, int, int]:
    """(BLOCK_Q, BLOCK_D, num_warps): all d channels of a query in one program, about 2048 accumulators, 8 per
    thread (16 per thread made ptxas spill the 16-bit forward on sm_90)."""
    def rule():
        bd = tu.next_pow2(d, 16)
        bq = max(16, min(128, 2048 // bd, tu.next_pow2(lq, 16)))
        return bq, bd, max(1, min(8, bq * bd // 256))
    return tu.cached_config(("ms_deform_attn", d, tu.next_pow2(lq, 16)), rule)


def _value_blocks(d: int) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_D, num_warps) of the value-gradient gather: 16 corners of d channels per step."""
    bd = tu.next_pow2(d, 16)
    return 16, bd, 1 if bd <= 64 else 2


def _prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    if spatial_shapes.device.type != "meta":  # a meta table (offline builds) has no values to check
        level_shapes(spatial_shapes, level_start_index, value.shape[1])  # the kernels index value with it
    return (value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
            sampling_locations.contiguous(), attention_weights.contiguous())


def forward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
            attention_weights: Tensor, align_corners: bool, padding_mode: str) -> Tensor:
    """(B, Lq, nH·d) in value's dtype (see the module docstring for the layouts)."""
    value, spatial_shapes, level_start_index, loc, weights = _prepare(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    b, s, heads, d = value.shape
    _, lq, _, levels, points, _ = loc.shape
    out = torch.empty((b, lq, heads * d), dtype=value.dtype, device=value.device)
    if out.numel() == 0:
        return out
    if levels * points == 0:
        return out.zero_()
    bq, bd, warps = _blocks(d, lq)
    with tu.device_guard(value):
        _fwd_kernel[(-(-lq // bq), b * heads)](
            out, value, loc, weights, spatial_shapes, level_start_index, s, lq, heads,
            D=d, NL=levels, NP=points, ALIGN=bool(align_corners), BLOCK_Q=bq, BLOCK_D=bd, num_warps=warps)
    return out


def backward(grad: Tensor, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
             sampling_locations: Tensor, attention_weights: Tensor, align_corners: bool,
             padding_mode: str) -> tuple[Tensor, Tensor, Tensor]:
    """(d value, d sampling_locations, d attention_weights), each in its input's dtype, contiguous."""
    value, spatial_shapes, level_start_index, loc, weights = _prepare(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    grad = grad.contiguous()
    b, s, heads, d = value.shape
    _, lq, _, levels, points, _ = loc.shape
    dvalue = torch.zeros_like(value)
    dloc = torch.zeros_like(loc)
    dweights = torch.zeros_like(weights)
    corners = lq * heads * levels * points * 4  # per batch element
    if b * s * heads * d == 0 or corners == 0:
        return dvalue, dloc, dweights
    keys = torch.empty((b, corners), dtype=torch.int32, device=value.device)
    bq, bd, warps = _blocks(d, lq)
    align = bool(align_corners)
    with tu.device_guard(value):
        _bwd_query_kernel[(-(-lq // bq), b * heads)](
            dloc, dweights, keys, grad, value, loc, weights, spatial_shapes, level_start_index, s, lq, heads,
            D=d, NL=levels, NP=points, ALIGN=align, BLOCK_Q=bq, BLOCK_D=bd, num_warps=warps)
        bc, bd, warps = _value_blocks(d)
        rows = torch.arange(s * heads + 1, dtype=torch.int32, device=value.device)
        chunk = max(1, CORNERS_PER_CHUNK // corners)
        for b0 in range(0, b, chunk):
            part = keys[b0:b0 + chunk]
            # stable: the corners of one value row keep the order of their ids, so the sums below have one order
            sorted_keys, perm = torch.sort(part, dim=1, stable=True)
            seg = torch.searchsorted(sorted_keys, rows.expand(part.shape[0], -1).contiguous())
            _bwd_value_kernel[(s * heads, part.shape[0])](
                dvalue, grad, loc, weights, spatial_shapes, perm, seg, b0, s, lq, heads,
                D=d, NL=levels, NP=points, ALIGN=align, BLOCK_C=bc, BLOCK_D=bd, num_warps=warps)
    return dvalue, dloc, dweights


def available() -> Optional[str]:
    """Why the Triton backend cannot run in this process, or None when it can."""
    return tu.triton_available()


def supports(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
             attention_weights: Tensor, align_corners: bool, padding_mode: str) -> Optional[str]:
    """Why the Triton backend cannot run these arguments (device, dtype, padding mode, sizes), or None."""
    for name, t in (("value", value), ("sampling_locations", sampling_locations),
                    ("attention_weights", attention_weights)):
        reason = tu.device_ok(t, name) or tu.dtype_ok(t, name)
        if reason:
            return reason
    if padding_mode != "zeros":
        return f"padding_mode {padding_mode!r}: the Triton kernels pad with zeros only (the reference does all)"
    b, s, heads, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    if s * heads + 1 > INT32_MAX or lq * heads * levels * points * 4 > INT32_MAX:
        return (f"S·nH = {s * heads} or Lq·nH·nL·nP·4 = {lq * heads * levels * points * 4} exceeds the int32 "
                "keys of the value gradient")
    if b * heads > 65535:
        return f"B·nH = {b * heads} exceeds the 65535 programs of a launch grid's second axis"
    if d > 512:
        return f"head dim d = {d} > 512: one program holds all d channels of a query"
    return None
