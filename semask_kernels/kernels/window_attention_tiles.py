"""Device helpers of the window-attention Triton kernels (``window_attention.py`` beside this file): token
geometry (roll, padding, partition as index arithmetic), loads and stores of token tiles, the relative-position
bias tile gathered from the table, and the shift-region / user mask tile. Nothing here is launched by itself."""

from .. import _triton_utils as tu

tl = tu.language()

@tu.jit
def _geometry(w, t, NWIN, NWC, H, W, HP, WP, SH, SW,
              WH: tl.constexpr, WW: tl.constexpr, SHIFTED: tl.constexpr, PAD_THEN_ROLL: tl.constexpr):
    """(outer index, y, x, is_padding, grid row, grid col) of window-local tokens ``t`` of window ``w``."""
    if SHIFTED:
        b = w // NWIN
        win = w % NWIN
        ph = (win // NWC) * WH + t // WW
        pw = (win % NWC) * WW + t % WW
        if PAD_THEN_ROLL:  # the rolled padded grid reads the padded map at (p + s) mod P
            y = (ph + SH) % HP
            x = (pw + SW) % WP
            pad = (y >= H) | (x >= W)
        else:  # the padded rolled map: grid cells past (H, W) are padding, the rest read (p + s) mod size
            pad = (ph >= H) | (pw >= W)
            y = (ph + SH) % H
            x = (pw + SW) % W
        return b, y, x, pad, ph, pw
    else:
        return w, t, t, t < 0, t, t


@tu.jit
def _offsets(g0, y, x, h, HD, s0, s1, s2, s3, SHIFTED: tl.constexpr):
    """Element offsets of the tokens' first column for head ``h`` (HD: head dim of this tensor)."""
    base = tl.cast(g0, tl.int64) * s0
    if SHIFTED:
        return base + y * s1 + x * s2 + h * HD * s3
    else:
        return base + h * s1 + x * s2


@tu.jit
def _load_tokens(P, PB, off, pad, ok, h, cols, DIM: tl.constexpr, s3, HAS_PB: tl.constexpr):
    """(rows, DIM_PAD) tile of tokens; padding tokens read the bias vector PB[h·DIM + c] (zeros without it)."""
    cmask = cols < DIM
    x = tl.load(P + off[:, None] + cols[None, :] * s3, mask=(ok & (pad == 0))[:, None] & cmask[None, :], other=0.0)
    if HAS_PB:
        xb = tl.load(PB + h * DIM + cols, mask=cmask, other=0.0)
        x = tl.where((ok & pad)[:, None], xb[None, :], x)
    return x


@tu.jit
def _store_tokens(P, off, pad, ok, cols, DIM: tl.constexpr, s3, value):
    """Store real tokens only: padding tokens have no place in the output."""
    mask = (ok & (pad == 0))[:, None] & (cols < DIM)[None, :]
    tl.store(P + off[:, None] + cols[None, :] * s3, value.to(P.dtype.element_ty), mask=mask)


@tu.jit
def _dot(a, b, DOT_DT: tl.constexpr, PREC: tl.constexpr):
    return tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PREC)


@tu.jit
def _bias_tile(TABLE, st0, st1, h, rows, cols, N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr):
    """bias[h, i, j] = table[idx(i, j), h], idx from the window coordinates; 0 outside the window (fp32)."""
    ok = (rows < N)[:, None] & (cols < N)[None, :]
    dh = (rows // WW)[:, None] - (cols // WW)[None, :] + (WH - 1)
    dw = (rows % WW)[:, None] - (cols % WW)[None, :] + (WW - 1)
    return tl.load(TABLE + (dh * (2 * WW - 1) + dw) * st0 + h * st1, mask=ok, other=0.0).to(tl.float32)


@tu.jit
def _region(ph, pw, HP, WP, SH, SW, WH: tl.constexpr, WW: tl.constexpr,
            SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr):
    """Shift region of grid cells: per axis [0, P-win), [P-win, P-shift), [P-shift, P); one region if shift 0."""
    r = ph * 0
    if SHIFT_H:
        r += ((ph >= HP - WH).to(tl.int32) + (ph >= HP - SH).to(tl.int32)) * 3
    if SHIFT_W:
        r += (pw >= WP - WW).to(tl.int32) + (pw >= WP - SW).to(tl.int32)
    return r


@tu.jit
def _mask_tile(MASK, sm0, sm1, sm2, n_mask, w, rows, cols, ph_r, pw_r, ph_c, pw_c, HP, WP, SH, SW, mask_value,
               N: tl.constexpr, WH: tl.constexpr, WW: tl.constexpr, SHIFTED: tl.constexpr,
               SHIFT_H: tl.constexpr, SHIFT_W: tl.constexpr):
    """The additive mask of window ``w`` (fp32): shift regions from coordinates, or the user mask[w mod nW]."""
    if SHIFTED:
        rr = _region(ph_r, pw_r, HP, WP, SH, SW, WH, WW, SHIFT_H, SHIFT_W)
        rc = _region(ph_c, pw_c, HP, WP, SH, SW, WH, WW, SHIFT_H, SHIFT_W)
        return tl.where(rr[:, None] != rc[None, :], mask_value, 0.0)
    else:
        ok = (rows < N)[:, None] & (cols < N)[None, :]
        base = tl.cast(w % n_mask, tl.int64) * sm0
        return tl.load(MASK + base + rows[:, None] * sm1 + cols[None, :] * sm2, mask=ok, other=0.0).to(tl.float32)


