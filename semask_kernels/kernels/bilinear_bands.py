"""Banded 1-D weights of the composite bilinear resampling used by ``prior_map_decode`` and
``upsample_cross_entropy`` (their Triton and CUDA backends).

Bilinear interpolation is separable, so level ``i`` of the decoder is ``out += A_i · X_i · B_iᵀ`` per (b, k)
plane, where ``A_i`` (H0 × h_i) and ``B_i`` (W0 × w_i) are the 1-D matrices of ``levels`` successive ×2
linear upsamplings followed, when the length differs, by a resize to the output length. Each row of such a
matrix has a few contiguous nonzeros, so the kernels take it as a *band*: ``start`` (R,) int32 and
``weight`` (R, T) with ``M[r, start[r] + t] = weight[r, t]``.

The matrices are built by pushing an identity through ``F.interpolate`` itself, so they follow torch's own
source-coordinate rule exactly (``align_corners``, ``scale_factor`` vs ``size``), whatever torch version runs.

Example::

    >>> start, weight = band_weights(4, 16, 2, False, False, torch.float32, "cpu")
    >>> start.shape, weight.shape
    (torch.Size([16]), torch.Size([16, 2]))
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["band_weights", "dense_matrix", "composite_matrix", "device_band"]


def _check_sizes(in_size: int, out_size: int, levels: int) -> None:
    if not (isinstance(in_size, int) and in_size >= 1):
        raise ValueError(f"in_size must be an int >= 1, got {in_size!r}")
    if not (isinstance(out_size, int) and out_size >= 1):
        raise ValueError(f"out_size must be an int >= 1, got {out_size!r}")
    if not (isinstance(levels, int) and levels >= 0):
        raise ValueError(f"levels must be an int >= 0, got {levels!r}")


@functools.lru_cache(maxsize=256)
def composite_matrix(in_size: int, out_size: int, levels: int, align_corners: bool) -> torch.Tensor:
    """The 1-D composite matrix M (out_size × in_size), float64 on the CPU (cached; do not modify it).

    ``levels`` successive ``F.interpolate(scale_factor=2, mode="linear")`` then, if the length is not
    ``out_size``, ``F.interpolate(size=out_size)`` — the decoder's up_i along one axis.
    """
    _check_sizes(in_size, out_size, levels)
    align_corners = bool(align_corners)
    # Each identity row is one input signal; F.interpolate maps it to the column of M for that input.
    x = torch.eye(in_size, dtype=torch.float64).unsqueeze(1)  # (in, 1, in)
    for _ in range(levels):
        x = F.interpolate(x, scale_factor=2, mode="linear", align_corners=align_corners)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=out_size, mode="linear", align_corners=align_corners)
    return x.squeeze(1).t().contiguous()  # (out, in)


@functools.lru_cache(maxsize=256)
def _band_cpu(in_size: int, out_size: int, levels: int, align_corners: bool,
              transpose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    m = composite_matrix(in_size, out_size, levels, align_corners)
    if transpose:
        m = m.t().contiguous()
    rows, cols = m.shape
    nonzero = m != 0
    idx = torch.arange(cols).expand(rows, cols)
    has_any = nonzero.any(dim=1)
    # First and last nonzero column per row; an all-zero row gets an empty band at column 0.
    first = torch.where(nonzero, idx, cols).min(dim=1).values
    last = torch.where(nonzero, idx, -1).max(dim=1).values
    first = torch.where(has_any, first, torch.zeros_like(first))
    last = torch.where(has_any, last, torch.zeros_like(last))
    width = int((last - first + 1).max().item())
    width = max(1, min(width, cols))
    # Shift bands left so start + width <= cols: the kernels never need a bounds check.
    start = torch.clamp(first, max=cols - width)
    gather = start.unsqueeze(1) + torch.arange(width).unsqueeze(0)  # (rows, width), all in range
    weight = torch.gather(m, 1, gather)
    return start.to(torch.int32).contiguous(), weight.contiguous()


def band_weights(in_size: int, out_size: int, levels: int, align_corners: bool, transpose: bool,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The band of M (out_size × in_size), or of Mᵀ (in_size × out_size) when ``transpose`` is True.

    Returns ``start`` (R,) int32 and ``weight`` (R, T) of ``dtype``, on ``device``, with R the number of rows
    of the (possibly transposed) matrix, T >= 1 the widest band, ``start[r] + T <= columns`` and
    ``M[r, start[r] + t] == weight[r, t]`` (zero-padded). Computed in float64 on the CPU and cached there.
    """
    start, weight = _band_cpu(int(in_size), int(out_size), int(levels), bool(align_corners), bool(transpose))
    # copy=True: on the CPU .to() would otherwise hand out the cached tensors themselves.
    return start.to(device, copy=True), weight.to(device=device, dtype=dtype, copy=True)


def dense_matrix(start: torch.Tensor, weight: torch.Tensor, columns: int) -> torch.Tensor:
    """Rebuild the dense (R × columns) matrix from a band (for tests and debugging), float64 on the CPU."""
    start = start.detach().cpu().long()
    weight = weight.detach().cpu().double()
    rows, width = weight.shape
    if start.shape != (rows,):
        raise ValueError(f"start must have shape ({rows},) to match weight {tuple(weight.shape)}, "
                         f"got {tuple(start.shape)}")
    out = torch.zeros(rows, columns, dtype=torch.float64)
    cols = start.unsqueeze(1) + torch.arange(width).unsqueeze(0)
    if rows and (cols.min() < 0 or cols.max() >= columns):
        raise ValueError(f"band reaches columns [{int(cols.min())}, {int(cols.max())}] outside [0, {columns})")
    out.scatter_(1, cols, weight)
    return out


@functools.lru_cache(maxsize=512)
def device_band(in_size: int, out_size: int, levels: int, align_corners: bool, transpose: bool,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``band_weights`` as fp32 on ``device``, cached there (read-only: kernels never write them)."""
    return band_weights(in_size, out_size, levels, align_corners, transpose, torch.float32, device)
