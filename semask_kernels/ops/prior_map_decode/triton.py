"""Triton backend of ``prior_map_decode``: one gather kernel for the forward and for the backward.

Level ``i`` of the decoder is ``A_i · X_i · B_iᵀ`` per (b, k) plane, with ``A_i`` (H0 × h_i) and ``B_i``
(W0 × w_i) the 1-D matrices of the composite (``i`` successive ×2 bilinear upsamplings, then a resize when the
length differs), taken as bands from ``kernels/bilinear_bands.band_weights`` (built by pushing an identity through
``F.interpolate``, so they follow torch's source-index rule exactly). The kernel computes, per output tile,

    out[y, x] = base[y, x] + Σ_levels Σ_t Σ_u RW[y, t] · CW[x, u] · X[RS[y] + t, CS[x] + u]

in fp32 and stores in the maps' dtype. Terms whose band weight is zero (a band's padding) are skipped, not
multiplied: a non-finite input reaches exactly the outputs that depend on it.

- forward: ``base`` = maps[0], up to three levels per launch (levels 4.. go to further launches that take the
  partial output as their base, read and written by the same program); the full-resolution upsampled maps of
  the reference are never formed.
- backward: d maps[i] = A_iᵀ · G · B_i is the same gather with the *transposed* bands (rows of A_iᵀ, B_iᵀ), one
  launch per level; d maps[0] is a copy of G. Every element is written by exactly one program with a fixed
  summation order: bitwise repeatable, no atomics.

Maps are read through their strides (non-contiguous inputs are not copied). Outputs are contiguous.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ... import _triton_utils as tu
from ...backends import reasons
from ...kernels.bilinear_bands import device_band

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/kernels/bilinear_bands.py",)

tl = tu.language()
LEVELS_PER_LAUNCH = 3


# ------------------------------------------------------------------------------------------------------ kernel

@tu.jit
def _level(X, RS, RW, CS, CW, s0, s1, s2, s3, b, k, ys, xs, y_ok, x_ok,
           TH: tl.constexpr, TW: tl.constexpr, BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr):
    """Σ_t Σ_u RW[y, t]·CW[x, u]·X[b, k, RS[y]+t, CS[x]+u] on a (BLOCK_Y, BLOCK_X) tile, fp32."""
    r0 = tl.load(RS + ys, mask=y_ok, other=0)
    c0 = tl.load(CS + xs, mask=x_ok, other=0)
    base = X + tl.cast(b, tl.int64) * s0 + tl.cast(k, tl.int64) * s1
    ok = y_ok[:, None] & x_ok[None, :]
    acc = tl.zeros([BLOCK_Y, BLOCK_X], tl.float32)
    for t in range(TH):  # not unrolled: transposed bands of deep levels are ~20 wide
        wr = tl.load(RW + ys * TH + t, mask=y_ok, other=0.0)
        row = base + (r0 + t).to(tl.int64) * s2
        inner = tl.zeros([BLOCK_Y, BLOCK_X], tl.float32)
        for u in range(TW):
            wc = tl.load(CW + xs * TW + u, mask=x_ok, other=0.0)
            val = tl.load(row[:, None] + ((c0 + u).to(tl.int64) * s3)[None, :], mask=ok, other=0.0)
            # zero band weights are padding, not dependencies: skip them so that 0·inf = NaN does not spread
            # one non-finite input over every output whose band merely covers it
            inner += tl.where(wc[None, :] != 0.0, wc[None, :] * val.to(tl.float32), 0.0)
        acc += tl.where(wr[:, None] != 0.0, wr[:, None] * inner, 0.0)
    return acc


@tu.jit
def _resample_kernel(OUT, BASE, X1, X2, X3,
                     RS1, RW1, CS1, CW1, RS2, RW2, CS2, CW2, RS3, RW3, CS3, CW3,
                     so0, so1, so2, so3, sb0, sb1, sb2, sb3,
                     s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33,
                     K, HO, WO,
                     HAS_BASE: tl.constexpr, NLEV: tl.constexpr,
                     TH1: tl.constexpr, TW1: tl.constexpr, TH2: tl.constexpr, TW2: tl.constexpr,
                     TH3: tl.constexpr, TW3: tl.constexpr, BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr):
    plane = tl.program_id(0)
    b = plane // K
    k = plane % K
    ys = tl.program_id(1) * BLOCK_Y + tl.arange(0, BLOCK_Y)
    xs = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)
    y_ok = ys < HO
    x_ok = xs < WO
    ok = y_ok[:, None] & x_ok[None, :]
    acc = tl.zeros([BLOCK_Y, BLOCK_X], tl.float32)
    if HAS_BASE:
        pb = BASE + tl.cast(b, tl.int64) * sb0 + tl.cast(k, tl.int64) * sb1
        acc += tl.load(pb + (ys * sb2)[:, None] + (xs * sb3)[None, :], mask=ok, other=0.0).to(tl.float32)
    if NLEV >= 1:
        acc += _level(X1, RS1, RW1, CS1, CW1, s10, s11, s12, s13, b, k, ys, xs, y_ok, x_ok, TH1, TW1,
                      BLOCK_Y, BLOCK_X)
    if NLEV >= 2:
        acc += _level(X2, RS2, RW2, CS2, CW2, s20, s21, s22, s23, b, k, ys, xs, y_ok, x_ok, TH2, TW2,
                      BLOCK_Y, BLOCK_X)
    if NLEV >= 3:
        acc += _level(X3, RS3, RW3, CS3, CW3, s30, s31, s32, s33, b, k, ys, xs, y_ok, x_ok, TH3, TW3,
                      BLOCK_Y, BLOCK_X)
    po = OUT + tl.cast(b, tl.int64) * so0 + tl.cast(k, tl.int64) * so1
    tl.store(po + (ys * so2)[:, None] + (xs * so3)[None, :], acc.to(OUT.dtype.element_ty), mask=ok)


# ------------------------------------------------------------------------------------------------------- host side

def _tile(h: int, w: int) -> tuple[int, int, int]:
    """(BLOCK_Y, BLOCK_X, num_warps) by rule: rows of up to 64 contiguous columns, about 512 outputs a program."""
    def rule():
        bx = min(64, tu.next_pow2(w, 16))
        by = min(tu.next_pow2(h), max(1, 512 // bx))
        return by, bx, 4
    return tu.cached_config(("prior_map_decode", h, w), rule)


def _launch(out: Tensor, base: Optional[Tensor], levels: Sequence[tuple[Tensor, tuple, tuple]]) -> None:
    """out (B, K, HO, WO) = base + Σ levels; each level is (X, (RS, RW), (CS, CW)), at most three."""
    b, k, ho, wo = out.shape
    by, bx, warps = _tile(ho, wo)
    xs, bands, strides, widths = [], [], [], []
    for x, (rs, rw), (cs, cw) in levels:
        xs.append(x)
        bands += [rs, rw, cs, cw]
        strides += list(x.stride())
        widths += [rw.shape[1], cw.shape[1]]
    pad = LEVELS_PER_LAUNCH - len(levels)
    xs += [out] * pad
    bands += [out] * (4 * pad)
    strides += [0] * (4 * pad)
    widths += [1] * (2 * pad)
    grid = (b * k, -(-ho // by), -(-wo // bx))
    _resample_kernel[grid](out, base if base is not None else out, *xs, *bands, *out.stride(),
                           *(base.stride() if base is not None else (0, 0, 0, 0)), *strides, k, ho, wo,
                           HAS_BASE=base is not None, NLEV=len(levels),
                           TH1=widths[0], TW1=widths[1], TH2=widths[2], TW2=widths[3], TH3=widths[4], TW3=widths[5],
                           BLOCK_Y=by, BLOCK_X=bx, num_warps=warps)


def forward(maps: list[Tensor], align_corners: bool) -> Tensor:
    """maps[i]: (B, K, h_i, w_i) of one dtype (fp16, bf16, fp32). Returns (B, K, h_0, w_0), contiguous."""
    base = maps[0]
    b, k, h0, w0 = base.shape
    out = torch.empty((b, k, h0, w0), dtype=base.dtype, device=base.device)
    if out.numel() == 0:
        return out
    levels = []
    for level, m in enumerate(maps[1:], start=1):
        h, w = m.shape[-2:]
        levels.append((m, device_band(int(h), h0, level, bool(align_corners), False, base.device),
                       device_band(int(w), w0, level, bool(align_corners), False, base.device)))
    if not levels:
        out.copy_(base)
        return out
    for i in range(0, len(levels), LEVELS_PER_LAUNCH):
        _launch(out, base if i == 0 else out, levels[i:i + LEVELS_PER_LAUNCH])
    return out


def backward(grad: Tensor, sizes: list[tuple[int, int]], align_corners: bool) -> list[Tensor]:
    """grad: (B, K, h_0, w_0); sizes: (h_i, w_i) of every map, maps[0] included. One gradient per map
    (d maps[0] is a copy of grad, never an alias)."""
    if tuple(grad.shape[-2:]) != tuple(sizes[0]):
        raise ValueError(f"grad must have the spatial size of maps[0] {tuple(sizes[0])}, "
                         f"got shape {tuple(grad.shape)}")
    b, k, h0, w0 = grad.shape
    grads = [grad.clone(memory_format=torch.contiguous_format)]
    for level, (h, w) in enumerate(sizes[1:], start=1):
        g = torch.empty((b, k, int(h), int(w)), dtype=grad.dtype, device=grad.device)
        if g.numel():
            _launch(g, None, [(grad, device_band(int(h), h0, level, bool(align_corners), True, grad.device),
                               device_band(int(w), w0, level, bool(align_corners), True, grad.device))])
        grads.append(g)
    return grads


def available() -> Optional[str]:
    """Why the Triton backend cannot run in this process, or None when it can."""
    return tu.triton_available()


def supports(maps: Sequence[Tensor], align_corners: bool) -> Optional[str]:
    """Every reason the Triton backend cannot run these maps (device, dtype), or None when it can."""
    found = []
    for i, m in enumerate(maps):
        if not isinstance(m, Tensor):
            found.append(f"maps[{i}] is not a tensor ({type(m).__name__})")
        else:
            found += [tu.device_ok(m, f"maps[{i}]"), tu.dtype_ok(m, f"maps[{i}]")]
    return reasons(*found)
