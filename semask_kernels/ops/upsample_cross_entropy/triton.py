"""Triton backend of ``upsample_cross_entropy``: bilinear resize + log-softmax + NLL + ignore_index + mean,
fused, forward and backward, never forming the (B, K, H, W) logits or their gradient.

The resize is separable: output row y reads low-res rows ``RS[y] + t`` with weights ``RW[y, t]`` (t < 2), output
column x reads columns ``CS[x] + u`` with ``CW[x, u]``. The bands come from
``kernels/bilinear_bands.band_weights`` with ``levels=0`` (one ``F.interpolate(size=...)``, or the identity when
the sizes agree), built by pushing an identity through ``F.interpolate``: torch's own source-index rule, both
``align_corners``.

Forward (``_lse_kernel``, one program per output row segment of BLOCK_X pixels): for each chunk of BLOCK_K
classes, interpolate the chunk's logits from the four taps (fp32), update an online log-sum-exp (running max m
and sum s of exp(z − m), fp32; every exponent subtracts first, so large logits lose nothing) and pick the
target's logit; per pixel loss = (m − z_target) + log s, 0 for ``ignore_index``. Each program writes one partial
loss sum and one partial count; the host sums the (fixed-size) partial buffers: deterministic. Nothing of size
B·K·H·W exists at any time.

Backward: the op saves only (logits, target), so the same kernel recomputes the per-pixel (m, s), 2·B·H·W fp32,
and the non-ignored count. ``_grad_kernel`` then writes d logits (B, K, h, w) as a *gather*: one program per
(b, low-res row i, block of low-res columns, chunk of classes) loops over the output rows y that row i feeds
(the transposed row band), recomputes z and g = exp(z − m)/s − onehot(target) for the output columns its block
feeds, and reduces them onto its columns with one small ``tl.dot`` against the dense (columns × output-columns)
slice of the column interpolation matrix, built in registers from the band. Every element of d logits is written
by exactly one program in a fixed order: bitwise repeatable, no atomics. The scale ``grad / count`` is applied
last (in fp32), so low-precision operands never carry 1/(B·H·W). Each output pixel's z is recomputed about twice
(once per low-res row it reads) plus the column halo of its block.

Loss returned in the logits' dtype, computed in fp32; d logits in the logits' dtype.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ... import _triton_utils as tu
from ...backends import reasons
from ...kernels.bilinear_bands import composite_matrix, device_band

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/kernels/bilinear_bands.py",)

tl = tu.language()


# ----------------------------------------------------------------------------------------------------- kernels

@tu.jit
def _interp(L, r0, rw0, rw1, c0, cw0, cw1, sl1, sl2, sl3, ks, mask, TR: tl.constexpr, TC: tl.constexpr):
    """(BLOCK_X, BLOCK_K) logits at one output row: Σ_t RW[t]·Σ_u CW[x, u]·L[k, r0 + t, c0[x] + u], fp32.
    ``L`` already points at the image; bands are at most 2 wide (linear interpolation)."""
    kcol = (ks.to(tl.int64) * sl1)[None, :]
    row = L + r0.to(tl.int64) * sl2
    z = tl.load(row + ((c0 * sl3).to(tl.int64))[:, None] + kcol, mask=mask, other=0.0).to(tl.float32)
    if TC == 2:
        z = cw0[:, None] * z + cw1[:, None] * tl.load(row + (((c0 + 1) * sl3).to(tl.int64))[:, None] + kcol,
                                                    mask=mask, other=0.0).to(tl.float32)
    else:
        z = cw0[:, None] * z
    if TR == 2:
        row = row + sl2
        z1 = tl.load(row + ((c0 * sl3).to(tl.int64))[:, None] + kcol, mask=mask, other=0.0).to(tl.float32)
        if TC == 2:
            z1 = cw0[:, None] * z1 + cw1[:, None] * tl.load(
                row + (((c0 + 1) * sl3).to(tl.int64))[:, None] + kcol, mask=mask, other=0.0).to(tl.float32)
        else:
            z1 = cw0[:, None] * z1
        z = rw0 * z + rw1 * z1
    else:
        z = rw0 * z
    return z


@tu.jit
def _row_taps(RS, RW, y, TR: tl.constexpr):
    r0 = tl.load(RS + y)
    rw0 = tl.load(RW + y * TR)
    rw1 = rw0 * 0.0
    if TR == 2:
        rw1 = tl.load(RW + y * TR + 1)
    return r0, rw0, rw1


@tu.jit
def _col_taps(CS, CW, xs, x_ok, TC: tl.constexpr):
    c0 = tl.load(CS + xs, mask=x_ok, other=0)
    cw0 = tl.load(CW + xs * TC, mask=x_ok, other=0.0)
    cw1 = cw0 * 0.0
    if TC == 2:
        cw1 = tl.load(CW + xs * TC + 1, mask=x_ok, other=0.0)
    return c0, cw0, cw1


@tu.jit
def _lse_kernel(L, T, STAT, PLOSS, PCNT, RS, RW, CS, CW,
                sl0, sl1, sl2, sl3, st0, st1, st2,
                K, H, W, n_xb, n_pix, ignore_index,
                TR: tl.constexpr, TC: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_K: tl.constexpr,
                WRITE_STAT: tl.constexpr):
    row = tl.program_id(0)  # b * H + y
    xb = tl.program_id(1)
    b = row // H
    y = row % H
    xs = xb * BLOCK_X + tl.arange(0, BLOCK_X)
    x_ok = xs < W
    tgt = tl.load(T + tl.cast(b, tl.int64) * st0 + y.to(tl.int64) * st1 + xs.to(tl.int64) * st2,
                  mask=x_ok, other=0).to(tl.int64)
    valid = x_ok & (tgt != ignore_index)
    r0, rw0, rw1 = _row_taps(RS, RW, y, TR)
    c0, cw0, cw1 = _col_taps(CS, CW, xs, x_ok, TC)
    img = L + tl.cast(b, tl.int64) * sl0
    m = tl.full([BLOCK_X], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_X], tl.float32)
    zt = tl.zeros([BLOCK_X], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        z = _interp(img, r0, rw0, rw1, c0, cw0, cw1, sl1, sl2, sl3, ks, x_ok[:, None] & k_ok[None, :], TR, TC)
        z = tl.where(k_ok[None, :], z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, 1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new[:, None]), 1)  # subtract first: |z| may be large
        m = m_new
        zt += tl.sum(tl.where(ks[None, :].to(tl.int64) == tgt[:, None], z, 0.0), 1)
    loss = tl.where(valid, (m - zt) + tl.log(s), 0.0)
    pid = row * n_xb + xb
    tl.store(PLOSS + pid, tl.sum(loss, 0))
    tl.store(PCNT + pid, tl.sum(valid.to(tl.int32), 0))
    if WRITE_STAT:
        pix = row.to(tl.int64) * W + xs
        tl.store(STAT + pix, m, mask=x_ok)
        tl.store(STAT + n_pix + pix, s, mask=x_ok)


@tu.jit
def _grad_kernel(L, T, STAT, SCALE, DL, RS, RW, CS, CW, YS, YW, XLO,
                 sl0, sl1, sl2, sl3, st0, st1, st2, sd0, sd1, sd2, sd3,
                 K, H, W, h, w, n_pix, ignore_index, x_span, j_step, n_ty,
                 TR: tl.constexpr, TC: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_X: tl.constexpr,
                 BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    prow = tl.program_id(0)  # b * h + i
    jb = tl.program_id(1)
    kc = tl.program_id(2)
    b = prow // h
    i = prow % h
    jl = tl.arange(0, BLOCK_J)
    js = jb * j_step + jl
    j_ok = (jl < j_step) & (js < w)
    ks = kc * BLOCK_K + tl.arange(0, BLOCK_K)
    k_ok = ks < K
    x_lo = tl.load(XLO + jb)
    img = L + tl.cast(b, tl.int64) * sl0
    acc = tl.zeros([BLOCK_J, BLOCK_K], tl.float32)
    y0 = tl.load(YS + i)
    for x0 in range(0, x_span, BLOCK_X):
        xs = x_lo + x0 + tl.arange(0, BLOCK_X)
        x_ok = xs < W
        c0, cw0, cw1 = _col_taps(CS, CW, xs, x_ok, TC)
        # The dense slice of the column interpolation matrix: bsub[j, x] = weight of low-res column j in x.
        bsub = tl.where(c0[None, :] == js[:, None], cw0[None, :], 0.0)
        if TC == 2:
            bsub += tl.where((c0 + 1)[None, :] == js[:, None], cw1[None, :], 0.0)
        bsub = tl.where(j_ok[:, None] & x_ok[None, :], bsub, 0.0)
        mask = x_ok[:, None] & k_ok[None, :]
        for t in range(n_ty):
            a = tl.load(YW + i * n_ty + t)
            if a != 0.0:  # zero-padded band entries feed nothing
                y = y0 + t
                r0, rw0, rw1 = _row_taps(RS, RW, y, TR)
                off = tl.cast(b, tl.int64) * H + y
                tgt = tl.load(T + tl.cast(b, tl.int64) * st0 + y.to(tl.int64) * st1 + xs.to(tl.int64) * st2,
                              mask=x_ok, other=0).to(tl.int64)
                valid = x_ok & (tgt != ignore_index)
                pix = off * W + xs
                m = tl.load(STAT + pix, mask=x_ok, other=0.0)
                inv_s = 1.0 / tl.load(STAT + n_pix + pix, mask=x_ok, other=1.0)
                z = _interp(img, r0, rw0, rw1, c0, cw0, cw1, sl1, sl2, sl3, ks, mask, TR, TC)
                p = tl.exp(z - m[:, None]) * inv_s[:, None]
                g = p - tl.where(ks[None, :].to(tl.int64) == tgt[:, None], 1.0, 0.0)
                g = tl.where(valid[:, None] & k_ok[None, :], g, 0.0)
                acc += a * tl.dot(bsub, g, input_precision=PREC)
    scale = tl.load(SCALE)
    ptr = DL + tl.cast(b, tl.int64) * sd0 + i.to(tl.int64) * sd2
    tl.store(ptr + (ks.to(tl.int64) * sd1)[None, :] + (js.to(tl.int64) * sd3)[:, None],
             (acc * scale).to(DL.dtype.element_ty), mask=j_ok[:, None] & k_ok[None, :])


# ------------------------------------------------------------------------------------------------------- host side

@dataclass(frozen=True)
class _Cols:
    """How the gradient kernel blocks the low-res columns: ``step`` real columns in a BLOCK_J tile, the output
    columns they are fed by start at ``x_lo[block]`` and span at most ``span``, read BLOCK_X at a time."""
    block_j: int
    step: int
    block_x: int
    span: int
    x_lo: tuple


@functools.lru_cache(maxsize=256)
def _column_blocks(w: int, big_w: int, align_corners: bool) -> _Cols:
    """Choose (BLOCK_J, step, BLOCK_X) by rule: least padded work per low-res column, from the exact nonzero
    pattern of the column interpolation matrix (so clamped borders and downsampling are handled)."""
    nz = composite_matrix(w, big_w, 0, align_corners) != 0  # (W, w)
    xs = torch.arange(big_w).unsqueeze(1).expand(big_w, w)
    first = torch.where(nz, xs, big_w).min(0).values.tolist()  # first output column fed by column j
    last = torch.where(nz, xs, -1).max(0).values.tolist()
    best = None
    for block_j in (16, 32):
        for step in range(1, min(block_j, w) + 1):
            lo, span = [], 1
            for j0 in range(0, w, step):
                f = min(first[j0:j0 + step])
                l_ = max(last[j0:j0 + step])
                if l_ < 0:  # a block that feeds nothing (downsampling): an empty range
                    f, l_ = 0, 0
                lo.append(f)
                span = max(span, l_ - f + 1)
            for block_x in (16, 32, 64, 128):
                cost = (-(-span // block_x) * block_x) * (block_j + 16) / step
                if best is None or cost < best[0]:
                    best = (cost, _Cols(block_j, step, block_x, span, tuple(lo)))
    return best[1]


@functools.lru_cache(maxsize=256)
def _x_lo(cols: _Cols, device: torch.device) -> Tensor:
    return torch.tensor(cols.x_lo, dtype=torch.int32, device=device)


def _fwd_tile(big_w: int, k: int) -> tuple[int, int]:
    return tu.cached_config(("upsample_cross_entropy", big_w, k),
                            lambda: (min(128, tu.next_pow2(big_w, 16)), min(32, tu.next_pow2(k, 16))))


def _bands(logits: Tensor, target: Tensor, align_corners: bool, transpose: bool):
    h, w = logits.shape[-2:]
    big_h, big_w = target.shape[-2:]
    rows = device_band(int(h), int(big_h), 0, bool(align_corners), transpose, logits.device)
    cols = device_band(int(w), int(big_w), 0, bool(align_corners), transpose, logits.device)
    return rows, cols


def _stats(logits: Tensor, target: Tensor, ignore_index: int, align_corners: bool, write_stat: bool):
    """(summed loss fp32, non-ignored count, per-pixel (max, sum of exp) (2, B, H, W) fp32 or None), all on
    the device."""
    b, k = logits.shape[:2]
    big_h, big_w = target.shape[-2:]
    block_x, block_k = _fwd_tile(big_w, k)
    n_xb = -(-big_w // block_x)
    (rs, rw), (cs, cw) = _bands(logits, target, align_corners, False)
    ploss = torch.empty(b * big_h * n_xb, dtype=torch.float32, device=logits.device)
    pcnt = torch.empty(b * big_h * n_xb, dtype=torch.int32, device=logits.device)
    stat = (torch.empty((2, b, big_h, big_w), dtype=torch.float32, device=logits.device) if write_stat
            else ploss)
    _lse_kernel[(b * big_h, n_xb)](
        logits, target, stat, ploss, pcnt, rs, rw, cs, cw, *logits.stride(), *target.stride(),
        k, big_h, big_w, n_xb, b * big_h * big_w, int(ignore_index), TR=rw.shape[1], TC=cw.shape[1],
        BLOCK_X=block_x, BLOCK_K=block_k, WRITE_STAT=write_stat, num_warps=4)
    # Fixed-size buffers summed by torch: the same order on every run.
    return ploss.sum(), pcnt.sum(), (stat if write_stat else None)


def _denominator(count: Tensor, target: Tensor, avg_non_ignore: bool) -> Tensor:
    if avg_non_ignore:
        return count.clamp(min=1).to(torch.float32)
    return torch.tensor(float(target.numel()), dtype=torch.float32, device=target.device)


def forward(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool, align_corners: bool) -> Tensor:
    """0-dim loss in the logits' dtype; same arguments as reference.forward."""
    if target.numel() == 0 or logits.numel() == 0:
        return logits.new_zeros(())
    total, count, _ = _stats(logits, target, ignore_index, align_corners, False)
    return (total / _denominator(count, target, avg_non_ignore)).to(logits.dtype)


def backward(grad: Tensor, logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
             align_corners: bool) -> Tensor:
    """d logits (B, K, h, w) in the logits' dtype, contiguous, bitwise repeatable."""
    b, k, h, w = logits.shape
    big_h, big_w = target.shape[-2:]
    dl = torch.empty((b, k, h, w), dtype=logits.dtype, device=logits.device)
    if dl.numel() == 0:
        return dl
    if target.numel() == 0:
        return dl.zero_()
    _, count, stat = _stats(logits, target, ignore_index, align_corners, True)
    scale = (grad.detach().to(device=logits.device, dtype=torch.float32).reshape(())
             / _denominator(count, target, avg_non_ignore)).reshape(1)
    (rs, rw), (cs, cw) = _bands(logits, target, align_corners, False)
    ys, yw = device_band(int(h), int(big_h), 0, bool(align_corners), True, logits.device)
    cols = _column_blocks(int(w), int(big_w), bool(align_corners))
    n_jb = len(cols.x_lo)
    block_k = min(32, tu.next_pow2(k, 16))
    grid = (b * h, n_jb, -(-k // block_k))
    _grad_kernel[grid](
        logits, target, stat, scale, dl, rs, rw, cs, cw, ys, yw, _x_lo(cols, logits.device),
        *logits.stride(), *target.stride(), *dl.stride(),
        k, big_h, big_w, h, w, b * big_h * big_w, int(ignore_index), cols.span, cols.step, yw.shape[1],
        TR=rw.shape[1], TC=cw.shape[1], BLOCK_J=cols.block_j, BLOCK_X=cols.block_x, BLOCK_K=block_k,
        PREC=tu.dot_precision(logits.dtype) or "tf32", num_warps=4)
    return dl


def available() -> Optional[str]:
    """Why the Triton backend cannot run in this process, or None when it can."""
    return tu.triton_available()


def supports(logits: Tensor, target: Tensor, ignore_index: int, avg_non_ignore: bool,
             align_corners: bool) -> Optional[str]:
    """Every reason the Triton backend cannot run these arguments (device, dtype, sizes), or None when it can."""
    return reasons(tu.device_ok(logits, "logits"), tu.dtype_ok(logits, "logits"), tu.device_ok(target, "target"),
                   target.shape[-1] > 65535 * 128 and f"target width {target.shape[-1]} exceeds the Triton grid "
                                                      f"limit",
                   logits.shape[-1] > 65535 and f"logits width {logits.shape[-1]} exceeds the Triton grid limit of "
                                                f"the backward (65535)",
                   not -2 ** 63 <= ignore_index < 2 ** 63 and f"ignore_index {ignore_index} does not fit in int64")
